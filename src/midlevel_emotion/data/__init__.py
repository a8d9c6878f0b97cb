"""Getting the datasets: the published layout and file formats, the labels and splits, the download (HTTP, zip checks), local copies and the embedded synthetic corpus."""
