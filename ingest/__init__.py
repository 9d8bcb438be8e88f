"""Raw data in, split tf.Examples out: the loaders (`loaders`: a source's files and tables; the two
input formats, `generic_csv` and `movielens_100k`, read row by row by `delimited` and `cells`
into `tables`) and their located errors, the dataset download, example encoding, history
features, synthetic data and the Beam transforms of RawExampleGen.

Below the components and the pipeline; it imports only `contract` of the project (the split is
`contract.split_rules`, which evaluation reads too); the models never import it."""
