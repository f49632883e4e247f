"""One tracked run of one part (run), the sweep (sweep), and the pipelines that the sweep and the commands
call: compare (store -> report -> compare run) and commmodel (store -> Part 4 model -> commmodel run).

Imports analysis, tracking, parts and core; never cli, bench, distributed or click."""
