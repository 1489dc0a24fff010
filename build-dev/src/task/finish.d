build-dev/src/task/finish.o: src/task/finish.c include/raffle/task.h \
 include/raffle/core.h include/raffle/data.h include/raffle/nn.h \
 include/raffle/train.h include/raffle/ckpt.h include/raffle/deploy.h
include/raffle/task.h:
include/raffle/core.h:
include/raffle/data.h:
include/raffle/nn.h:
include/raffle/train.h:
include/raffle/ckpt.h:
include/raffle/deploy.h:
