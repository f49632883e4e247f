"""`gradacc bench`'s performance lines (lines, measure, e2e), each two figures measured side by side, and the
seeds' reference script (seeds_reference, self-contained: it shares no code with gradacc).

Imports study, tracking, parts and core; never cli, distributed or click."""
