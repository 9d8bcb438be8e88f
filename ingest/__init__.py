"""Raw data in, split tf.Examples out: loaders and their located errors, the dataset download,
example encoding, history features, synthetic data and the Beam transforms of RawExampleGen.

Below the components and the pipeline, above `evaluation` (its protocol is the one definition of
the split); the models never import it."""
