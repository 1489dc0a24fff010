build-dev/src/coord/slurm.o: src/coord/slurm.c include/raffle/coord.h \
 include/raffle/core.h include/raffle/job.h
include/raffle/coord.h:
include/raffle/core.h:
include/raffle/job.h:
