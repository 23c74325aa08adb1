"""I/O at the edges: images, UV files, videos, safe checkpoint reading, atomic writes."""
