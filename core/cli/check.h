/* check: `smartproxy --check [--format text|json]`, what a loaded configuration would do.
 *
 * Text: the summary of config/print.h, the kernel rules, then the warnings of
 * config/lint.h and of the certificates the routes serve (expired, or expiring within
 * 14 days). JSON, for CI pipelines: one object
 *   {"ok": true, "file", "ports": [...], "listen_addresses": [...],
 *    "routes": [<as GET /routes>], "warnings": [{"route", "message"}]}
 * and, when the configuration does not load, {"ok": false, "error": "..."}.
 * Warnings never change the exit status. */
#ifndef SP_CLI_CHECK_H
#define SP_CLI_CHECK_H

#include <stdbool.h>
#include <stdio.h>

#include "config/config.h"
#include "nft/nft.h"

/* Prints what g does and its warnings; returns how many warnings there were. */
size_t sp_check_print(const sp_gen *g, const sp_nft_ruleset *kernel, bool json, FILE *out);

/* Prints a load error: as text on stderr, or as {"ok": false, "error"} on out. */
void sp_check_print_error(const char *err, bool json, FILE *out);

#endif
