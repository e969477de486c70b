"""``python -m ecgscale.train``: a study's runs in this process, or across ``torchrun``'s."""

from ecgscale.train.distributed import main

main()
