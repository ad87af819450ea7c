/* The GLib-in-C floor of benchmarks/instructions.py: the same workloads written against
 * GLib directly (one repeating idle; a socketpair ping-pong through g_unix_fd_add; a burst
 * of one-shot timeouts; a chain of 0 ms one-shot timeouts).  Usage: floor WORKLOAD N. */
#include <glib.h>
#include <glib-unix.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long count, n;
static GMainLoop *ml;
static int fds[2];

static gboolean repeat(gpointer d) {
    if (++count >= n) { g_main_loop_quit(ml); return FALSE; }
    return TRUE;
}
static gboolean on_b(int fd, GIOCondition c, gpointer d) { char x; (void)!read(fds[1], &x, 1); (void)!write(fds[1], "x", 1); return TRUE; }
static gboolean on_a(int fd, GIOCondition c, gpointer d) {
    char x; (void)!read(fds[0], &x, 1);
    if (++count >= n) { g_main_loop_quit(ml); return FALSE; }
    (void)!write(fds[0], "x", 1); return TRUE;
}
static gboolean fired(gpointer d) { if (++count >= n) g_main_loop_quit(ml); return FALSE; }
static gboolean fired0(gpointer d) { if (++count >= n) g_main_loop_quit(ml); else g_timeout_add(0, fired0, NULL); return FALSE; }

int main(int argc, char **argv) {
    const char *w = argv[1]; n = atol(argv[2]);
    ml = g_main_loop_new(NULL, FALSE);
    if (!strcmp(w, "idle")) g_idle_add(repeat, NULL);
    else if (!strcmp(w, "fd")) {
        socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        g_unix_fd_add(fds[1], G_IO_IN, on_b, NULL);
        g_unix_fd_add(fds[0], G_IO_IN, on_a, NULL);
        (void)!write(fds[0], "x", 1);
    } else if (!strcmp(w, "timers")) { for (long i = 0; i < n; i++) g_timeout_add(i % 2, fired, NULL); }
    else if (!strcmp(w, "timer0")) g_timeout_add(0, fired0, NULL);
    else return 2;
    g_main_loop_run(ml);
    return 0;
}
