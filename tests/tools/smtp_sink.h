/*
 * Starts and stops tests/tools/smtp_sink.py as a child process for the C
 * tests and the mail benchmark, and reads what it received. Header-only so
 * each test executable gets its own copy; every function is static inline.
 */
#ifndef LICOL_SMTP_SINK_H
#define LICOL_SMTP_SINK_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMTP_SINK_PYTHON "/usr/bin/python3"
#define SMTP_SINK_SCRIPT LICOL_SOURCE_DIR "/tests/tools/smtp_sink.py"

struct smtp_sink {
    int port;
    pid_t pid;
    char dir[64];
};

/* Returns a TCP port on 127.0.0.1 that was free a moment ago. */
static inline int smtp_sink_free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline int smtp_sink_accepts(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Prepares sink with a fresh directory and a free port, without starting
 * it. Returns 0 or -1. */
static inline int smtp_sink_prepare(struct smtp_sink *sink)
{
    memset(sink, 0, sizeof(*sink));
    snprintf(sink->dir, sizeof(sink->dir), "/tmp/licol-sink-XXXXXX");
    if (!mkdtemp(sink->dir))
        return -1;
    sink->port = smtp_sink_free_port();
    return sink->port > 0 ? 0 : -1;
}

/* Starts the prepared sink with extra options (NULL-terminated, may be
 * NULL) and waits up to 10 s until it accepts connections. The probe
 * connection counts in the sink's "connections" file. Returns 0 or -1. */
static inline int smtp_sink_run(struct smtp_sink *sink, const char *const *extra)
{
    const char *argv[32];
    char port[16];
    int argc = 0;

    snprintf(port, sizeof(port), "%d", sink->port);
    argv[argc++] = SMTP_SINK_PYTHON;
    argv[argc++] = SMTP_SINK_SCRIPT;
    argv[argc++] = "--port";
    argv[argc++] = port;
    argv[argc++] = "--dir";
    argv[argc++] = sink->dir;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    sink->pid = fork();
    if (sink->pid < 0)
        return -1;
    if (sink->pid == 0) {
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (smtp_sink_accepts(sink->port))
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

static inline int smtp_sink_start(struct smtp_sink *sink, const char *const *extra)
{
    if (smtp_sink_prepare(sink) < 0)
        return -1;
    return smtp_sink_run(sink, extra);
}

static inline void smtp_sink_stop(struct smtp_sink *sink)
{
    if (sink->pid > 0) {
        kill(sink->pid, SIGTERM);
        waitpid(sink->pid, NULL, 0);
        sink->pid = 0;
    }
}

/* Stops the sink and deletes its directory. */
static inline void smtp_sink_cleanup(struct smtp_sink *sink)
{
    DIR *dir;
    struct dirent *entry;

    smtp_sink_stop(sink);
    dir = opendir(sink->dir);
    if (!dir)
        return;
    while ((entry = readdir(dir))) {
        char path[512];

        if (entry->d_name[0] == '.' && (entry->d_name[1] == '\0' || entry->d_name[1] == '.'))
            continue;
        snprintf(path, sizeof(path), "%s/%s", sink->dir, entry->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(sink->dir);
}

/* Returns the number of messages received so far. */
static inline int smtp_sink_count(const struct smtp_sink *sink)
{
    DIR *dir = opendir(sink->dir);
    struct dirent *entry;
    int count = 0;

    if (!dir)
        return 0;
    while ((entry = readdir(dir))) {
        size_t len = strlen(entry->d_name);
        if (entry->d_name[0] != '.' && len > 5 && strcmp(entry->d_name + len - 5, ".json") == 0)
            count++;
    }
    closedir(dir);
    return count;
}

/* Returns the number of connections the sink accepted, probes included. */
static inline int smtp_sink_connections(const struct smtp_sink *sink)
{
    char path[128];
    FILE *file;
    int count = 0;

    snprintf(path, sizeof(path), "%s/connections", sink->dir);
    file = fopen(path, "r");
    if (!file)
        return 0;
    if (fscanf(file, "%d", &count) != 1)
        count = 0;
    fclose(file);
    return count;
}

/* Loads the decoded record of message number (1-based). */
static inline json_t *smtp_sink_message(const struct smtp_sink *sink, int number)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%06d.json", sink->dir, number);
    return json_load_file(path, 0, NULL);
}

/* Waits until the sink has received at least count messages, for up to
 * timeout_ms. Returns the number received. */
static inline int smtp_sink_wait(const struct smtp_sink *sink, int count, int timeout_ms)
{
    int received = smtp_sink_count(sink);

    for (int waited = 0; received < count && waited < timeout_ms; waited += 20) {
        usleep(20 * 1000);
        received = smtp_sink_count(sink);
    }
    return received;
}

#endif
