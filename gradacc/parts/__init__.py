"""The measurements: context (what the configurations of one process share), micro (Part 1), update (Part 2),
converge (Part 3). Each part takes a Protocol and a Context and fills a Result; it never logs.

Imports gradacc.core (and gradacc.names) only: never tracking, analysis or click."""
