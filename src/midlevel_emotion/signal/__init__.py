"""From audio to the network's input: decoding and resampling, the log-filtered spectrogram, the memory-mapped store."""
