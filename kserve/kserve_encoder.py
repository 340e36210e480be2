"""The KServe-hosted encoder's container program (the no-JVM predictor runtime): the kserve-encoder ServingRuntime in
manifests/ runs `python /opt/fashionrec/kserve/kserve_encoder.py --model_name=fashionrec --model_dir=/mnt/models ...`,
and `fashionrec serve --runtime kserve` runs this same file with the same arguments on loopback."""

from fashionrec.serving.kserve_encoder import main

if __name__ == "__main__":
    main()
