"""Getting the datasets: the published file formats, the download (HTTP, zip checks), local copies and the embedded synthetic corpus."""
