build-dev/src/core/tensor.o: src/core/tensor.c include/raffle/core.h
include/raffle/core.h:
