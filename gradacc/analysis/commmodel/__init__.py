"""Part 4's communication and straggler model: model (pure formulas), inputs (what it takes from the runs'
tables), tables (its markdown renderings)."""
