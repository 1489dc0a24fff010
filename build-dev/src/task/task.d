build-dev/src/task/task.o: src/task/task.c include/raffle/task.h \
 include/raffle/core.h include/raffle/data.h include/raffle/nn.h \
 include/raffle/train.h include/raffle/ckpt.h
include/raffle/task.h:
include/raffle/core.h:
include/raffle/data.h:
include/raffle/nn.h:
include/raffle/train.h:
include/raffle/ckpt.h:
