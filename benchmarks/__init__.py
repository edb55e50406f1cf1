"""symjac reference benchmarks (see benchmarks/RESULTS.md and DESIGN.md "Reference problems")."""
