"""rref: a small, correct, Docker-like reference runtime."""
