/*
 * The list of subsystems and route groups of the server. A new capability
 * adds its start, reload, stop and free calls here, and its routes in
 * app_register_routes, so that server.c stays about the process life cycle.
 */
#include "app.h"

int app_subsystems_start(struct app *app, char **err)
{
    (void)app;
    *err = NULL;
    return 0;
}

void app_subsystems_reload(struct app *app)
{
    (void)app;
}

void app_subsystems_stop(struct app *app)
{
    (void)app;
}

void app_subsystems_free(struct app *app)
{
    (void)app;
}

void app_register_routes(struct app *app)
{
    app_register_core_routes(app);
}
