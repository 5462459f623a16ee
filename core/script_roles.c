/*
 * Permission checks through scripts/roles.lua: can(subject, action, target).
 * The subject and target tables are built once per state and refilled in
 * place. The subject's role table is rebuilt only when the role set or the
 * person changes, so a check costs a few table writes and one lua_pcall.
 */
#include "script_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bit;
} role_names[] = {
    {"gerant", SCRIPT_ROLE_GERANT},       {"employe", SCRIPT_ROLE_EMPLOYE},
    {"client", SCRIPT_ROLE_CLIENT},       {"visiteur", SCRIPT_ROLE_VISITEUR},
    {"comptable", SCRIPT_ROLE_COMPTABLE}, {"proprietaire", SCRIPT_ROLE_PROPRIETAIRE},
};

#define ROLE_COUNT (sizeof(role_names) / sizeof(role_names[0]))
#define MAX_ACTION 64

unsigned script_role_from_name(const char *name)
{
    for (size_t i = 0; i < ROLE_COUNT; i++) {
        if (strcmp(name, role_names[i].name) == 0)
            return role_names[i].bit;
    }
    return 0;
}

/* Creates the reusable tables: subject = { id, roles = {} } and target.
 * Stack: [-0, +0]. */
static void create_tables(struct script_state *st)
{
    lua_State *L = st->L;

    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, (int)ROLE_COUNT);
    lua_pushvalue(L, -1);
    st->roles_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setfield(L, -2, "roles");
    st->subject_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 4);
    st->target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    st->cache_valid = 0;
}

/* Pushes the subject table, refreshed when the person or roles changed.
 * NOTE: a script that modifies subject.roles changes it for the following
 * checks of the same subject, so roles.lua must treat its arguments as
 * read-only (the shipped one does). Stack: [-0, +1]. */
static void push_subject(struct script_state *st, const struct script_subject *subject)
{
    lua_State *L = st->L;

    lua_rawgeti(L, LUA_REGISTRYINDEX, st->subject_ref);
    if (st->cache_valid && st->cached_roles == subject->roles &&
        st->cached_person == subject->person_id)
        return;

    lua_pushinteger(L, (lua_Integer)subject->person_id);
    lua_setfield(L, -2, "id");
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->roles_ref);
    for (size_t i = 0; i < ROLE_COUNT; i++) {
        if (subject->roles & role_names[i].bit)
            lua_pushboolean(L, 1);
        else
            lua_pushnil(L);
        lua_setfield(L, -2, role_names[i].name);
    }
    lua_pop(L, 1);
    st->cached_roles = subject->roles;
    st->cached_person = subject->person_id;
    st->cache_valid = 1;
}

/* Pushes the target table refilled from target, or nil. Stack: [-0, +1]. */
static void push_target(struct script_state *st, const struct script_target *target)
{
    lua_State *L = st->L;

    if (target == NULL) {
        lua_pushnil(L);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->target_ref);
    if (target->person_id != 0)
        lua_pushinteger(L, (lua_Integer)target->person_id);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "person_id");
    lua_pushboolean(L, target->is_self);
    lua_setfield(L, -2, "is_self");
    lua_pushboolean(L, target->is_family);
    lua_setfield(L, -2, "is_family");
    if (target->role != NULL)
        lua_pushstring(L, target->role);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "role");
}

int script_can(struct script_state *st, const struct script_subject *subject,
               const char *action, const struct script_target *target, char **reason)
{
    lua_State *L = st->L;
    int allowed = 0;
    size_t action_len = strlen(action);

    if (reason != NULL)
        *reason = NULL;
    if (action_len > MAX_ACTION || subject == NULL)
        return 0;
    if (st->subject_ref == LUA_NOREF)
        create_tables(st);
    if (script_push_function(st, SCRIPT_MOD_ROLES, 0, SCRIPT_ROLES_CAN) != 0)
        return 0;

    push_subject(st, subject);
    lua_pushlstring(L, action, action_len);
    push_target(st, target);
    if (script_call(st, 3, 2, "roles.lua can") != 0) {
        /* The subject table may have been left half-filled. */
        st->cache_valid = 0;
        return 0;
    }
    allowed = lua_type(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -2); /* only true allows */
    if (!allowed && reason != NULL && lua_type(L, -1) == LUA_TSTRING)
        *reason = strdup(lua_tostring(L, -1));
    lua_pop(L, 2);
    return allowed;
}
