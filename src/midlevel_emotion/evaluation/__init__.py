"""Tables 2 and 3, the cost of explainability, calibration, the planted truth, stability, the report and the verdicts."""
