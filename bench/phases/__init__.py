"""Job phases after training: eval, latency, errprop. Each writes its own result files."""
