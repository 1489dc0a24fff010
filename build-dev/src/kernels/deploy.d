build-dev/src/kernels/deploy.o: src/kernels/deploy.c \
 include/raffle/deploy.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/kernels.h
include/raffle/deploy.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/kernels.h:
