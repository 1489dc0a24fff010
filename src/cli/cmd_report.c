/* raffle report STORE/NAME: regenerates report.json, report.csv and
 * report.html from a sweep's store (job.json, ledger, metrics). */
#include "cli/cli.h"
#include "raffle/report.h"

#include <stdio.h>

int rf_cmd_report(int argc, char **argv) {
    int done = 0, json = 0;
    const char *pos[1];
    cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print the report object (report.json's content) on one line", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("report", "STORE/NAME", "Rebuilds a sweep's report.{json,csv,html} from its results store.",
                       opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s;
    rf_status st = rf_store_open_path(&ctx, pos[0], 0, &s);
    if (st) return cli_fail("report", &ctx, st);
    st = rf_report_write(&ctx, s, NULL);
    if (!st && json) {
        cJSON *r;
        st = rf_report_build(&ctx, s, NULL, &r);
        if (!st) cli_print_json(r);
    }
    rf_store_close(s);
    if (st) return cli_fail("report", &ctx, st);
    if (!json) printf("%s/report.json\n%s/report.csv\n%s/report.html\n", pos[0], pos[0], pos[0]);
    return 0;
}
