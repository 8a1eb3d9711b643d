"""Token estimation: offline tokenizers, a shared cache, and calibration learnt from actual usage."""
