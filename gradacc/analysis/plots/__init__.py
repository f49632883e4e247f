"""The figures (matplotlib, Agg): style (shared look), compare (the study's plots), noise (B_simple), commmodel
(Part 4's model), run (one PNG per run). Series and tables in, PNG files out."""
