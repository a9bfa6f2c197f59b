/*
 * LD_PRELOAD shim that lets Debian's xenstored (xen-utils-4.17) run as a plain
 * process without a hypervisor, for mdguard's tests. Written for this project.
 *
 * It fakes the few libxenctrl / libxenevtchn / libxengnttab calls xenstored
 * makes and redirects /proc/xen/xsd_port and /proc/xen/xsd_kva to files in
 * $XS_SHIM_DIR. Nothing here talks to Xen. The same shim serves the OCaml
 * oxenstored (xen-utils-4.17), which also needs:
 *  - its compiled-in socket directory /var/run/xenstored (no option, no
 *    environment variable) moved to $XS_SHIM_DIR/run: mkdir, unlink, bind;
 *  - xc_map_foreign_range(domid) (it maps guest rings that way, not with
 *    grants): the same ring-<domid> file as xengnttab_map_grant_ref;
 *  - xc_domain_getinfolist: as xc_domain_getinfo.
 *
 *  - xsd_kva: a 4 KiB file mmap'ed as dom0's ring (unused by the tests).
 *  - xengnttab_map_grant_ref(domid): maps $XS_SHIM_DIR/ring-<domid> (created,
 *    4 KiB, MAP_SHARED), so a test can play an introduced guest domain by
 *    mapping the same file and speaking the xenstore ring protocol.
 *  - event channels: one FIFO $XS_SHIM_DIR/evtchn is the xenevtchn fd; a test
 *    "notifies" xenstored by writing a 4-byte port number to it. Local ports
 *    bound by xenstored are written to $XS_SHIM_DIR/port-<domid>. xenstored's
 *    notifications to a guest go to the FIFO $XS_SHIM_DIR/notify-<port> when
 *    a test made one (an event-driven bridge), else nowhere.
 *  - xc_domain_getinfo: every domain exists and runs, except those with a file
 *    $XS_SHIM_DIR/dead-<domid> (then it is reported dying).
 *  - setrlimit: clamped to the hard limit instead of failing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE 4096

static const char *shim_dir(void)
{
    const char *d = getenv("XS_SHIM_DIR");
    if (!d || !*d) {
        fprintf(stderr, "xs-shim: XS_SHIM_DIR not set\n");
        abort();
    }
    return d;
}

static int ensure_page_file(const char *path)
{
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int fd = real_open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size < PAGE && ftruncate(fd, PAGE) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static const char *redirect(const char *path, char *buf, size_t len)
{
    if (!path)
        return path;
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        snprintf(buf, len, "%s/xsd_port", shim_dir());
        if (access(buf, F_OK) != 0) {
            FILE *(*real_fopen)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
            FILE *f = real_fopen(buf, "w");
            if (f) {
                fputs("1\n", f);
                fclose(f);
            }
        }
        return buf;
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        snprintf(buf, len, "%s/xsd_kva", shim_dir());
        int fd = ensure_page_file(buf);
        if (fd >= 0)
            close(fd);
        return buf;
    }
    static const char *const rundirs[] = {"/var/run/xenstored", "/run/xenstored"};
    for (size_t i = 0; i < sizeof(rundirs) / sizeof(rundirs[0]); i++) {
        size_t n = strlen(rundirs[i]);
        if (strncmp(path, rundirs[i], n) == 0 && (path[n] == '/' || path[n] == 0)) {
            snprintf(buf, len, "%s/run%s", shim_dir(), path + n);
            return buf;
        }
    }
    return path;
}

int unlink(const char *path)
{
    static int (*real)(const char *);
    char buf[4096];
    if (!real)
        real = dlsym(RTLD_NEXT, "unlink");
    return real(redirect(path, buf, sizeof(buf)));
}

int mkdir(const char *path, mode_t mode)
{
    static int (*real)(const char *, mode_t);
    char buf[4096];
    if (!real)
        real = dlsym(RTLD_NEXT, "mkdir");
    return real(redirect(path, buf, sizeof(buf)), mode);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
        char path[sizeof(un->sun_path) + 1], buf[4096];
        memcpy(path, un->sun_path, sizeof(un->sun_path));
        path[sizeof(un->sun_path)] = 0;
        const char *to = redirect(path, buf, sizeof(buf));
        if (to != path) {
            struct sockaddr_un moved = {.sun_family = AF_UNIX};
            if (strlen(to) >= sizeof(moved.sun_path)) {
                errno = ENAMETOOLONG;
                return -1;
            }
            strcpy(moved.sun_path, to);
            return real(fd, (const struct sockaddr *)&moved, sizeof(moved));
        }
    }
    return real(fd, addr, len);
}

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    char buf[4096];
    mode_t mode = 0;
    if (!real_open)
        real_open = dlsym(RTLD_NEXT, "open");
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    return real_open(redirect(path, buf, sizeof(buf)), flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real_fopen)(const char *, const char *);
    char buf[4096];
    if (!real_fopen)
        real_fopen = dlsym(RTLD_NEXT, "fopen");
    return real_fopen(redirect(path, buf, sizeof(buf)), mode);
}

int setrlimit(__rlimit_resource_t res, const struct rlimit *rl)
{
    static int (*real)(__rlimit_resource_t, const struct rlimit *);
    if (!real)
        real = dlsym(RTLD_NEXT, "setrlimit");
    if (real(res, rl) == 0)
        return 0;
    struct rlimit cur, want = *rl;
    if (getrlimit(res, &cur) != 0)
        return -1;
    if (want.rlim_max > cur.rlim_max)
        want.rlim_max = cur.rlim_max;
    if (want.rlim_cur > want.rlim_max)
        want.rlim_cur = want.rlim_max;
    return real(res, &want);
}

/* ---- libxenctrl ---- */
static int xc_dummy;
void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
    (void)logger; (void)dombuild_logger; (void)flags;
    return &xc_dummy;
}
int xc_interface_close(void *xch) { (void)xch; return 0; }

/* Only the leading fields of xc_dominfo_t are touched: domid, ssidref, then
 * the flag bits (dying:1 crashed:1 shutdown:1 paused:1 blocked:1 running:1 ...). */
struct dominfo_head {
    uint32_t domid;
    uint32_t ssidref;
    unsigned int flags;
    unsigned int shutdown_reason;
};
int xc_domain_getinfo(void *xch, uint32_t first, unsigned int max, void *info)
{
    (void)xch;
    if (max < 1 || !info)
        return 0;
    struct dominfo_head *h = info;
    char path[4096];
    snprintf(path, sizeof(path), "%s/dead-%u", shim_dir(), first);
    int dead = access(path, F_OK) == 0;
    memset(h, 0, sizeof(*h));
    h->domid = first;
    h->flags = dead ? 0x1 /* dying */ : 0x20 /* running */;
    return 1;
}

/* The leading fields of xc_domaininfo_t (struct xen_domctl_getdomaininfo):
 * domid_t domain, uint16_t pad, uint32_t flags (XEN_DOMINF_dying 1<<0,
 * XEN_DOMINF_running 1<<5). */
struct domaininfo_head {
    uint16_t domain;
    uint16_t pad;
    uint32_t flags;
};
int xc_domain_getinfolist(void *xch, uint32_t first, unsigned int max, void *info)
{
    (void)xch;
    if (max < 1 || !info)
        return 0;
    struct domaininfo_head *h = info;
    char path[4096];
    snprintf(path, sizeof(path), "%s/dead-%u", shim_dir(), first);
    int dead = access(path, F_OK) == 0;
    memset(h, 0, sizeof(*h));
    h->domain = (uint16_t)first;
    h->flags = dead ? 0x1 : 0x20;
    return 1;
}

static void *map_ring(uint32_t domid, int prot)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/ring-%u", shim_dir(), domid);
    int fd = ensure_page_file(path);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, PAGE, prot, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

void *xc_map_foreign_range(void *xch, uint32_t dom, int size, int prot, unsigned long mfn)
{
    (void)xch; (void)mfn;
    if (size != PAGE) {
        errno = EINVAL;
        return NULL;
    }
    return map_ring(dom, prot);
}

/* ---- libxenevtchn ---- */
static int evt_dummy;
static int evt_fd = -1;
static unsigned next_port = 10;

static int evt_open_fifo(void)
{
    if (evt_fd >= 0)
        return evt_fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/evtchn", shim_dir());
    if (mkfifo(path, 0600) != 0 && errno != EEXIST)
        return -1;
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    evt_fd = real_open(path, O_RDWR | O_NONBLOCK);
    return evt_fd;
}
void *xenevtchn_open(void *logger, unsigned flags)
{
    (void)logger; (void)flags;
    if (evt_open_fifo() < 0)
        return NULL;
    return &evt_dummy;
}
void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
    (void)fd;
    return xenevtchn_open(logger, flags);
}
int xenevtchn_close(void *h) { (void)h; return 0; }
int xenevtchn_fd(void *h) { (void)h; return evt_open_fifo(); }
int xenevtchn_bind_virq(void *h, unsigned virq) { (void)h; (void)virq; return 1; }
int xenevtchn_bind_interdomain(void *h, uint32_t domid, unsigned remote)
{
    (void)h; (void)remote;
    unsigned port = next_port++;
    char path[4096];
    snprintf(path, sizeof(path), "%s/port-%u", shim_dir(), domid);
    FILE *(*real_fopen)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
    FILE *f = real_fopen(path, "w");
    if (f) {
        fprintf(f, "%u\n", port);
        fclose(f);
    }
    return (int)port;
}
int xenevtchn_unbind(void *h, unsigned port) { (void)h; (void)port; return 0; }
/* xenstored notifies a guest after writing its replies or watch events to the
 * ring, and after taking requests from a full ring. A test that wants to be
 * woken (instead of polling the ring) makes the FIFO $XS_SHIM_DIR/notify-<port>
 * and reads it; each notify writes one byte to it (dropped when the FIFO is
 * full: the reader has a wake-up pending anyway). Opened read-write, so a
 * reader that went away costs no SIGPIPE. Without the FIFO a notify does
 * nothing. */
#define NOTIFY_PORTS 4096
static int notify_fd[NOTIFY_PORTS]; /* fd + 1; 0: not open */
int xenevtchn_notify(void *h, unsigned port)
{
    (void)h;
    if (port >= NOTIFY_PORTS)
        return 0;
    if (!notify_fd[port]) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/notify-%u", shim_dir(), port);
        int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
        int fd = real_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return 0;
        notify_fd[port] = fd + 1;
    }
    char b = 1;
    if (write(notify_fd[port] - 1, &b, 1) < 0) {
        /* full (EAGAIN): a wake-up is pending already */
    }
    return 0;
}
int xenevtchn_unmask(void *h, unsigned port) { (void)h; (void)port; return 0; }
int xenevtchn_pending(void *h)
{
    (void)h;
    uint32_t port;
    ssize_t n = read(evt_open_fifo(), &port, sizeof(port));
    if (n != (ssize_t)sizeof(port))
        return 0x7fffffff; /* nothing pending: a port nobody uses */
    return (int)port;
}

/* ---- libxengnttab ---- */
static int gnt_dummy;
void *xengnttab_open(void *logger, unsigned flags) { (void)logger; (void)flags; return &gnt_dummy; }
int xengnttab_close(void *h) { (void)h; return 0; }
int xengnttab_set_max_grants(void *h, uint32_t n) { (void)h; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *h, uint32_t domid, uint32_t ref, int prot)
{
    (void)h; (void)ref;
    return map_ring(domid, prot);
}
int xengnttab_unmap(void *h, void *addr, uint32_t count)
{
    (void)h;
    return munmap(addr, (size_t)count * PAGE);
}
