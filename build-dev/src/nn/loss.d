build-dev/src/nn/loss.o: src/nn/loss.c include/raffle/nn.h \
 include/raffle/core.h
include/raffle/nn.h:
include/raffle/core.h:
