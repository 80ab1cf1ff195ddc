/* config/print: the --check summary of a generation (ports, listen addresses, and one line
 * per route: what it matches and what it does), from config/describe.h's description of
 * each route. */
#ifndef SP_CONFIG_PRINT_H
#define SP_CONFIG_PRINT_H

#include <stdio.h>

#include "config/config.h"

/* Prints the --check summary: ports, routes and what they do. */
void sp_gen_print_summary(const sp_gen *g, FILE *out);

#endif
