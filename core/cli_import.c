#include "cli.h"

#include <stdio.h>

int cli_import(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("La commande import n'est pas encore disponible dans cette version.\n", stderr);
    return CLI_FAILED;
}
