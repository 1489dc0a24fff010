build-dev/src/job/job.o: src/job/job.c include/raffle/job.h \
 include/raffle/core.h include/raffle/ckpt.h
include/raffle/job.h:
include/raffle/core.h:
include/raffle/ckpt.h:
