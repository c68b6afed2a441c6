"""One module per scenario of issue 8; each has `run(stack, quick) -> Result`."""
