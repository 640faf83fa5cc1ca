"""mmoral-pipeline: panoramic dental X-rays -> structured attributes -> instruction data -> SFT -> benchmark."""

__version__ = "0.1.0"
