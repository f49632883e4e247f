"""The study's report: discussion (Parts 1-4 as sentences computed from the table), noise (the noise scale and
the variants), part4 (the model and the DDP runs in numbers), html (the self-contained page)."""
