"""The paper's protocol: which model learns from which clips, where each run trains, the result tables, the cross-machine fingerprint."""
