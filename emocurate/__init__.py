"""emocurate: build emotion-captioned image datasets (ingest -> classify -> caption -> clip-score -> publish)."""

__version__ = "0.1.0"
