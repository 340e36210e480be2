"""Entrypoint of the FAISS transformer container (manifests/ runs it with KServe's standard arguments:
--model_name, --predictor_host, --predictor_protocol v2, --http_port, plus --index_dir and --feature_repo).
`fashionrec serve` starts the same code, `python -m fashionrec.transformer`, with the same arguments."""

from fashionrec.transformer import main

if __name__ == "__main__":
    main()
