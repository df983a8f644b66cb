"""Building the training data bank: sources and the held-out split, synthetic camera and object motion,
the writer, and a colour check. Its reader is `otok.train.bank`, which training loads without PyAV."""
