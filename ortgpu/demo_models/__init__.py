"""PP-OCRv4 detection and recognition models for ortgpu demo (see README.md here)."""
