"""Container images: both targets of the Dockerfile built with docker or buildah (on a local base stand-in where none can be pulled), and KFP tasks and servers run inside them."""
