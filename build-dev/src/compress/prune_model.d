build-dev/src/compress/prune_model.o: src/compress/prune_model.c \
 include/raffle/prune.h include/raffle/core.h include/raffle/nn.h \
 include/raffle/data.h include/raffle/train.h include/raffle/ckpt.h
include/raffle/prune.h:
include/raffle/core.h:
include/raffle/nn.h:
include/raffle/data.h:
include/raffle/train.h:
include/raffle/ckpt.h:
