"""Entrypoint of the KServe-hosted encoder (the no-JVM predictor runtime; manifests/ selects it with the
`kserve-encoder` overlay): `python -m fashionrec.kserve_encoder --model_name fashionrec --model_dir /mnt/models`."""

from fashionrec.kserve_encoder import main

if __name__ == "__main__":
    main()
