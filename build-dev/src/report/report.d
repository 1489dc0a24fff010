build-dev/src/report/report.o: src/report/report.c \
 include/raffle/report.h include/raffle/core.h include/raffle/job.h \
 include/raffle/store.h
include/raffle/report.h:
include/raffle/core.h:
include/raffle/job.h:
include/raffle/store.h:
