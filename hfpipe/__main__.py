"""`python -m hfpipe`, so that `accelerate launch -m hfpipe run ...` works too."""

from hfpipe.cli import main

if __name__ == "__main__":
    main()
