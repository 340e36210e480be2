"""The FAISS transformer's container program: the InferenceService in manifests/ runs
`python /opt/fashionrec/kserve/transformer.py` with KServe's standard arguments (--model_name, --predictor_host,
--predictor_protocol, --http_port, ...) plus --index_dir and --feature_repo; `fashionrec serve` runs this same file with
the same arguments on loopback."""

from fashionrec.serving.transformer import main

if __name__ == "__main__":
    main()
