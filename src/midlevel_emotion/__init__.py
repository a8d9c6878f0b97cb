"""Explainable music emotion recognition via mid-level perceptual features.

A re-implementation of Chowdhury, Vall, Haunschmid & Widmer, "Towards Explainable
Music Emotion Recognition: The Route via Mid-level Features" (ISMIR 2019).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import midlevel_emotion` stays cheap for the stages that never explain.
    if name in ("explain", "Explanation", "compare"):
        from .explanation import song

        return getattr(song, name)
    raise AttributeError(f"module 'midlevel_emotion' has no attribute {name!r}")
