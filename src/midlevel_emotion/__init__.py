"""Explainable music emotion recognition via mid-level perceptual features.

A re-implementation of Chowdhury, Vall, Haunschmid & Widmer, "Towards Explainable
Music Emotion Recognition: The Route via Mid-level Features" (ISMIR 2019).
"""

__version__ = "0.1.0"
