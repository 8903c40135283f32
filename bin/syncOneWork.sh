#!/usr/bin/env bash
# syncOneWork.sh: audit one restored work, then sync it into the archive (atomically) and/or its web images to S3.
set -euo pipefail

readonly PROG=syncOneWork
readonly EX_OK=0 EX_USAGE=2 EX_WORK=3 EX_AUDIT_PRE=4 EX_ARCHIVE=5 EX_REFUSED=6 EX_AUDIT_POST=7 EX_WEB=8
readonly EX_SUCCESS_LIST=9 EX_BUSY=10 EX_NO_ARCHIVE=11
readonly WORK_MARKERS=(images archive sources eBooks)
# spelled out, not [A-Za-z]: a range in a UTF-8 locale may match other letters; matched whole (contract/keys.py)
readonly RID_LETTERS=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
readonly RID_RE="^[$RID_LETTERS][${RID_LETTERS}0123456789_-]*\$"

usage() {
    cat <<EOF
Usage: syncOneWork.sh [-h] [-A] [-W] [-a archiveParent] [-w webParent] [-s successWorkList] workPath

Audits the work at workPath (RID = its last path component, a whole RID), then syncs it.
  -a archiveParent   sync into archiveParent/Archive{NN//25}/{NN}/{RID} (NN = the RID's last two characters
                     when both are digits, else 00). archiveParent must exist: it is never created (an unmounted
                     archive mount would fill the local disk). Atomic: built in .{RID}.syncing.<pid> next to
                     the target, verified, then renamed into place. Without -A files are added and updated,
                     never deleted.
  -A                 the archive copy becomes exactly workPath (deletions included; the finisher always uses
                     it); refused when workPath is empty or not a work (no images/, archive/, sources/, eBooks/,
                     {RID}-I… image-group folder or {RID}.bag/bagit.txt).
  -w webParent       copy the image-group folders of workPath/images/ to webParent/{RID}/images/… (an
                     s3://bucket/prefix); requires -s. Skipped when NO_REFRESH_WEB=Yes.
  -W                 replace the content of webParent/{RID}/ (objects not in images/ are deleted).
  -s successWorkList append the RID to this file when every step asked for succeeded.
                     With -a, the marker archiveParent/.sync-locks/{RID}.synced records the digest of the
                     work's {RID}.bag/manifest-*.txt, written before that line ("pending" with the list's size)
                     and completed after it: a later sync of the same staged work finds the archive copy already
                     in place (under the work's lock, the copy checked) and syncs nothing; it appends the line
                     only when a run killed between the two writes had not appended it.
  -h                 this help.
  No -a and no -w: only the audit runs.

Environment:
  LOCAL_AUDIT_OPTIONS  arguments of audit-tool before the sync (on workPath), split on whitespace
  REPO_AUDIT_OPTIONS   arguments of audit-tool after the archive sync (on the archive copy)
  AUDIT_REQUIRED=1     fail when audit-tool is not on PATH (default: say so and continue)
  NO_REFRESH_WEB=Yes   skip the web copy
  SYNC_VERIFY          checksum, quick (size and mtime) or inodes (each file the staged file's inode, hard links
                       only); default: inodes for hard links, checksum for copies
  SYNC_FORCE_COPY=1    copy even when workPath and the archive share a filesystem (tests, benchmarks)
  SYNC_PYTHON          python with boto3 for the web copy (default python3); honours AWS_ENDPOINT_URL
  syncLogTempDir       when set, the files copied or linked are logged in syncLogTempDir/{RID}-rsync.log
  SYNC_LOCK_WAIT       seconds to wait for the work's lock held by another sync (default 0: exit $EX_BUSY at once)

Output: "syncOneWork: {RID}: archive: copy_mode=link|copy path=…" tells whether the payload was hard-linked
(staging and archive on one filesystem: no second copy, cp -al) or copied (one rsync pass); "archive: already synced
(marker …) path=…" that the marker matched and nothing was copied.

Signals: SIGTERM or SIGINT put the archive back as it was (a half-built copy removed, a moved-aside previous
copy renamed back) and exit 143 or 130, except once the copy is in place and the success list is being
written: that last step finishes and the script exits 0. A closed stdout (SIGPIPE) never stops a sync.

Exit codes:
  $EX_OK   success
  $EX_USAGE   usage error
  $EX_WORK   workPath missing, not a directory, its last component not a whole work RID, or it resolves to
      a folder of another name
  $EX_AUDIT_PRE   audit before the sync failed, or audit-tool missing while AUDIT_REQUIRED=1
  $EX_ARCHIVE   archive sync failed (rsync, verification or rename); the archive is left as it was
  $EX_REFUSED   -A refused: workPath is empty or not a work
  $EX_AUDIT_POST   audit of the archive copy failed (the archive copy is already in place)
  $EX_WEB   web copy failed
  $EX_SUCCESS_LIST   the success list could not be written
  $EX_BUSY  another sync of this work holds the lock
  $EX_NO_ARCHIVE  archiveParent does not exist (not mounted?); nothing was written
EOF
}

RID=-
STEP=setup
# output never stops the sync: a finisher killed with -9 closes our stdout, and the sync must still finish
say() { printf '%s: %s: %s: %s\n' "$PROG" "$RID" "$STEP" "$*" 2>/dev/null || true; }
die() {
    local code=$1
    shift
    printf '%s: ERROR: %s: %s: %s\n' "$PROG" "$RID" "$STEP" "$*" >&2 || true
    exit "$code"
}

usage_error() {
    printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
    usage >&2
    exit "$EX_USAGE"
}

# The archive bucket number NN: the RID's last two characters when both are digits, else 00.
bucket_number() {
    local tail=${1: -2}
    if [[ ${#1} -ge 2 && $tail =~ ^[0-9][0-9]$ ]]; then printf '%s' "$tail"; else printf '00'; fi
}

is_work() {
    local marker
    for marker in "${WORK_MARKERS[@]}"; do
        [[ -d $1/$marker ]] && return 0
    done
    # a staged bag keeps its tag files in {RID}.bag/; BDRC works often hold only {RID}-I… image groups
    [[ -f $1/$RID.bag/bagit.txt ]] && return 0
    compgen -G "$1/$RID-I*/" >/dev/null
}

has_files() { [[ -n $(find "$1" -type f -print -quit) ]]; }

# The marker, written atomically: "DIGEST" once every step is done, "DIGEST pending OFFSET" (the success list's
# size before its line) while the success line is being written.
write_marker() {
    printf '%s\n' "$*" >"$MARKER.tmp.$$" && mv -f -- "$MARKER.tmp.$$" "$MARKER"
}

# A run killed between its pending marker and its final one: append the success line unless it is already there
# (after OFFSET: an earlier sync of this work may be named before it), then the final marker.
finish_pending() {
    local offset=$1 listed=0
    # grep -c reads to the end: an early exit (-q) would fail tail on the closed pipe and look like "not listed"
    if [[ -n $SUCCESS_LIST ]]; then
        listed=$(tail -c "+$((offset + 1))" -- "$SUCCESS_LIST" 2>/dev/null | grep -cxF -- "$RID" || true)
    fi
    if [[ -n $SUCCESS_LIST && ${listed:-0} == 0 ]]; then
        printf '%s\n' "$RID" >>"$SUCCESS_LIST" || die "$EX_SUCCESS_LIST" "cannot append to $SUCCESS_LIST"
        say "the success line of the interrupted sync appended to $SUCCESS_LIST"
    fi
    write_marker "$DIGEST" || say "could not write $MARKER"
}

# The digest the marker records: sha256 of the bag's manifest-*.txt (C order); empty when the work has none.
manifest_digest() {
    local manifests=()
    mapfile -t manifests < <(LC_ALL=C find "$1/$RID.bag" -maxdepth 1 -type f -name 'manifest-*.txt' 2>/dev/null \
        | LC_ALL=C sort)
    [[ ${#manifests[@]} -gt 0 ]] || return 0
    cat -- "${manifests[@]}" | sha256sum | cut -d' ' -f1
}

run_audit() {
    # $1: phase (pre|post), $2: options string, $3: path
    local opts=()
    read -r -a opts <<<"$2"
    if ! command -v audit-tool >/dev/null 2>&1; then
        if [[ ${AUDIT_REQUIRED:-0} == 1 ]]; then
            die "$EX_AUDIT_PRE" "audit-tool is not installed and AUDIT_REQUIRED=1"
        fi
        say "audit-tool is not installed: $1-sync audit skipped"
        return 0
    fi
    say "audit-tool ${opts[*]} $3"
    audit-tool "${opts[@]}" "$3"
}

# --- archive ------------------------------------------------------------------------------------------------
TMP_DIR=
PREV_DIR=
TARGET=
MARKER=
DIGEST=
ALREADY_SYNCED=0
SUCCESS_LIST=

on_exit() {
    # an interrupted swap puts the previous version back; a half-built copy is removed
    if [[ -n $PREV_DIR && -d $PREV_DIR && ! -e $TARGET ]]; then
        mv -T -- "$PREV_DIR" "$TARGET" || true
    fi
    if [[ -n $TMP_DIR && -d $TMP_DIR ]]; then
        rm -rf -- "$TMP_DIR" || true
    fi
}

recover_stale() {
    # $1: parent dir. Runs under the work's lock: every sibling left by an earlier run is stale.
    local parent=$1 prev
    for prev in "$parent/.$RID.previous."*; do
        [[ -d $prev ]] || continue
        if [[ ! -e $TARGET ]]; then
            say "restoring $prev left by an interrupted swap"
            mv -T -- "$prev" "$TARGET"
        else
            say "removing stale $prev"
            rm -rf -- "$prev"
        fi
    done
    local tmp
    for tmp in "$parent/.$RID.syncing."*; do
        [[ -e $tmp ]] || continue
        say "removing stale $tmp"
        rm -rf -- "$tmp"
    done
}

inode_list() {
    # $1 folder: every entry below it, NUL-terminated and sorted: "path/" for a folder, "path type inode" otherwise
    (cd -- "$1" && find . -mindepth 1 \( -type d -printf '%P/\0' \) -o -printf '%P %y %i\0' | LC_ALL=C sort -z)
}

same_inodes() {
    # $1 source, $2 hard-linked copy, $3 replace (0|1): every file of the source is its own inode at its path in the
    # copy, every folder there (with replace, nothing else is): the same bytes, without an rsync of each file
    local lists diffs columns=-23
    [[ $3 == 1 ]] && columns=-3
    lists=$(mktemp -d) || return 1
    if ! inode_list "$1" >"$lists/source" || ! inode_list "$2" >"$lists/copy"; then
        rm -rf -- "$lists"
        return 1
    fi
    diffs=$(LC_ALL=C comm -z "$columns" "$lists/source" "$lists/copy" | tr '\0' '\n')
    rm -rf -- "$lists"
    if [[ -n $diffs ]]; then
        printf '%s\n' "$diffs" | head -20 >&2
        return 1
    fi
}

verify_copy() {
    # $1 source, $2 copy, $3 replace (0|1), $4 checksum|quick|inodes: an empty itemized dry-run (or inode listing
    # difference) means every file is there
    if [[ $4 == inodes ]]; then
        same_inodes "$1" "$2" "$3"
        return
    fi
    local verify_opts=(-r -l --dry-run --itemize-changes) itemized diffs
    if [[ $4 == quick ]]; then verify_opts+=(-t); else verify_opts+=(--checksum); fi
    if [[ $3 == 1 ]]; then verify_opts+=(--delete); fi
    itemized=$(rsync "${verify_opts[@]}" "$1/" "$2/") || return 1
    diffs=$(printf '%s\n' "$itemized" | grep -v -e '^\.d' -e '^$' || true)
    if [[ -n $diffs ]]; then
        printf '%s\n' "$diffs" | head -20 >&2
        return 1
    fi
}

can_hard_link() {
    # $1 source, $2 archive parent: one real link of a source file, since one file system seen through two mounts
    # (two bind mounts of a container) has one device number but refuses links across them (EXDEV)
    local probe first
    first=$(find "$1" -type f -print -quit)
    [[ -n $first ]] || return 1
    probe="$2/.$RID.linkprobe.$$"
    if ln -- "$first" "$probe" 2>/dev/null; then
        rm -f -- "$probe"
        return 0
    fi
    say "hard links from $1 to $2 fail (another file system or mount): copying instead"
    return 1
}

sync_archive() {
    # $1 source, $2 archive parent, $3 replace (0|1)
    local src=$1 archive_parent=$2 replace=$3
    STEP=archive
    local nn
    nn=$(bucket_number "$RID")
    local bucket_dir="Archive$((10#$nn / 25))/$nn"
    local parent="$archive_parent/$bucket_dir"
    TARGET="$parent/$RID"
    # created from inside the root, never the root itself: a root gone since the check (unmounted) fails here
    (cd -- "$archive_parent" 2>/dev/null && mkdir -p -- "$bucket_dir" .sync-locks) \
        || die "$EX_NO_ARCHIVE" "archive root $archive_parent is gone or $parent cannot be created"
    exec 9>"$archive_parent/.sync-locks/$RID.lock"
    if ! flock -n 9; then
        local lock_wait=${SYNC_LOCK_WAIT:-0}
        [[ $lock_wait != 0 ]] || die "$EX_BUSY" "another sync of $RID holds $archive_parent/.sync-locks/$RID.lock"
        say "another sync of $RID holds its lock: waiting up to ${lock_wait} s"
        flock -w "$lock_wait" 9 || die "$EX_BUSY" "another sync of $RID held $archive_parent/.sync-locks/$RID.lock for ${lock_wait} s"
    fi
    recover_stale "$parent"
    MARKER="$archive_parent/.sync-locks/$RID.synced"
    DIGEST=$(manifest_digest "$src")
    local marked='' state='' offset=''
    if [[ -f $MARKER ]]; then read -r marked state offset <"$MARKER" || true; fi
    if [[ -n $DIGEST && $marked == "$DIGEST" && -d $TARGET ]] \
        && verify_copy "$src" "$TARGET" "$replace" quick 2>/dev/null; then
        ALREADY_SYNCED=1
        if [[ $state == pending && $offset =~ ^[0-9]+$ ]]; then
            trap '' TERM INT
            finish_pending "$offset"
        fi
        say "already synced (marker $DIGEST) path=$TARGET"
        return 0
    fi
    # from here the archive copy changes: no marker may vouch for it until this sync has finished
    rm -f -- "$MARKER"

    TMP_DIR="$parent/.$RID.syncing.$$"
    local copy_mode='copy' rsync_opts=(-a)
    if [[ ${SYNC_FORCE_COPY:-0} != 1 ]] && can_hard_link "$src" "$parent"; then
        copy_mode="link"
    elif [[ -d $TARGET ]]; then
        rsync_opts+=("--link-dest=$TARGET")
    fi
    local copy_log=/dev/null
    if [[ -n ${syncLogTempDir:-} ]] && mkdir -p -- "$syncLogTempDir"; then
        copy_log="$syncLogTempDir/$RID-rsync.log"
        rsync_opts+=("--log-file=$copy_log")
    fi
    say "building $TMP_DIR from $src (copy_mode=$copy_mode)"
    if [[ $copy_mode == link ]]; then
        # every file a hard link of the staged one: cp makes them without rsync's processes and per-file protocol
        cp -a -l -v -T -- "$src" "$TMP_DIR" >>"$copy_log" \
            || die "$EX_ARCHIVE" "linking $src into $TMP_DIR failed (exit $?)"
    else
        rsync "${rsync_opts[@]}" "$src/" "$TMP_DIR/" || die "$EX_ARCHIVE" "rsync into $TMP_DIR failed (exit $?)"
    fi
    if [[ $replace == 0 && -d $TARGET ]]; then
        # files only in the archive copy are kept: hard-linked from it, never rewritten
        rsync -a --ignore-existing "--link-dest=$TARGET" "$TARGET/" "$TMP_DIR/" \
            || die "$EX_ARCHIVE" "carrying archive-only files of $TARGET failed (exit $?)"
        rsync -a -f '+ */' -f '- *' "$src/" "$TMP_DIR/" || die "$EX_ARCHIVE" "folder attributes failed (exit $?)"
    fi
    # hard links share the source's inodes: the same inode at each path suffices; copies are compared by checksum
    local verify=${SYNC_VERIFY:-}
    if [[ -z $verify ]]; then
        if [[ $copy_mode == link ]]; then verify=inodes; else verify=checksum; fi
    fi
    [[ $verify != inodes || $copy_mode == link ]] || verify=checksum  # a copy has inodes of its own
    if ! verify_copy "$src" "$TMP_DIR" "$replace" "$verify"; then
        # a file linked from the old copy on size and mtime alone may differ: rewrite by checksum, once
        say "verification found differences: re-syncing them by checksum"
        local resync_opts=(-a --checksum)
        [[ $copy_mode != link ]] || resync_opts+=("--link-dest=$src")  # the staged file linked in its place
        rsync "${resync_opts[@]}" "$src/" "$TMP_DIR/" \
            || die "$EX_ARCHIVE" "checksum re-sync into $TMP_DIR failed (exit $?)"
        verify_copy "$src" "$TMP_DIR" "$replace" checksum \
            || die "$EX_ARCHIVE" "verification of $TMP_DIR against $src failed (files above differ); archive unchanged"
    fi

    if [[ -d $TARGET ]]; then
        PREV_DIR="$parent/.$RID.previous.$$"
        mv -T -- "$TARGET" "$PREV_DIR" || die "$EX_ARCHIVE" "cannot move $TARGET aside"
    fi
    mv -T -- "$TMP_DIR" "$TARGET" || die "$EX_ARCHIVE" "cannot rename $TMP_DIR to $TARGET"
    TMP_DIR=
    if [[ -n $PREV_DIR ]]; then
        rm -rf -- "$PREV_DIR" || say "could not remove $PREV_DIR (removed by the next run)"
        PREV_DIR=
    fi
    say "copy_mode=$copy_mode path=$TARGET"
}

# --- web ----------------------------------------------------------------------------------------------------
sync_web() {
    # $1 source, $2 web parent, $3 replace (0|1)
    STEP=web
    if [[ ${NO_REFRESH_WEB:-} == Yes ]]; then
        say "NO_REFRESH_WEB=Yes: web copy skipped"
        return 0
    fi
    local args=(--work-rid "$RID")
    if [[ $3 == 1 ]]; then args+=(--replace); fi
    "${SYNC_PYTHON:-python3}" -m onprem.finisher.sync.webcopy "${args[@]}" "$1" "$2" \
        || die "$EX_WEB" "web copy to $2/$RID failed (exit $?)"
}

main() {
    local archive_parent='' web_parent='' success_list='' replace_archive=0 replace_web=0 opt
    while getopts ':hAWa:w:s:' opt; do
        case $opt in
            h) usage; exit "$EX_OK" ;;
            A) replace_archive=1 ;;
            W) replace_web=1 ;;
            a) archive_parent=$OPTARG ;;
            w) web_parent=$OPTARG ;;
            s) success_list=$OPTARG ;;
            :) usage_error "option -$OPTARG needs an argument" ;;
            *) usage_error "unknown option -$OPTARG" ;;
        esac
    done
    shift $((OPTIND - 1))
    [[ $# -eq 1 ]] || usage_error "expected exactly one workPath, got $#"
    if [[ -n $web_parent && -z $success_list ]]; then usage_error "-w needs -s successWorkList"; fi
    SUCCESS_LIST=$success_list

    local work_path=${1%/}
    # no $(basename …): command substitution strips a trailing newline and would name a sibling folder
    RID=${work_path##*/}
    STEP=check
    if [[ ! $RID =~ $RID_RE ]]; then
        RID=$(printf '%q' "$RID")
        die "$EX_WORK" "$RID is not a work RID (matched whole: a letter, then letters, digits, _ or -)"
    fi
    [[ -d $work_path ]] || die "$EX_WORK" "$work_path is not a directory"
    work_path=$(cd -- "$work_path" && pwd -P)
    [[ ${work_path##*/} == "$RID" ]] || die "$EX_WORK" "$1 resolves to $work_path, a folder not named $RID"
    if [[ $replace_archive == 1 && -n $archive_parent ]]; then
        has_files "$work_path" || die "$EX_REFUSED" "-A refused: $work_path is empty"
        is_work "$work_path" || die "$EX_REFUSED" "-A refused: $work_path is not a work (no ${WORK_MARKERS[*]})"
    fi

    if [[ -n $archive_parent ]]; then
        STEP=archive
        # resolved now, checked: an empty result would make the target /Archive{n}/…
        local archive_real
        archive_real=$(cd -- "$archive_parent" 2>/dev/null && pwd -P) \
            || die "$EX_NO_ARCHIVE" "archive root $archive_parent does not exist (not mounted?)"
        [[ -n $archive_real ]] || die "$EX_NO_ARCHIVE" "archive root $archive_parent cannot be resolved"
        archive_parent=$archive_real
    fi

    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap '' PIPE

    STEP=audit-pre
    run_audit pre "${LOCAL_AUDIT_OPTIONS:-}" "$work_path" || die "$EX_AUDIT_PRE" "audit-tool failed on $work_path"

    if [[ -n $archive_parent ]]; then
        sync_archive "$work_path" "$archive_parent" "$replace_archive"
        if [[ $ALREADY_SYNCED == 1 ]]; then
            # the earlier run that wrote the marker did every step, its success list line included
            STEP="done"
            say "ok"
            return 0
        fi
        STEP=audit-post
        run_audit post "${REPO_AUDIT_OPTIONS:-}" "$TARGET" || die "$EX_AUDIT_POST" "audit-tool failed on $TARGET"
    fi
    if [[ -n $web_parent ]]; then
        sync_web "$work_path" "${web_parent%/}" "$replace_web"
    fi
    # the copy is in place: the marker and the success line are written together, a stop now waits for both.
    # The marker goes first, pending with the list's size: a run killed from here on is finished by the next one
    # (finish_pending), never synced again and never listed twice
    trap '' TERM INT
    local marked=0
    if [[ -n $MARKER && -n $DIGEST ]]; then
        STEP=marker
        if [[ -z $SUCCESS_LIST ]] && write_marker "$DIGEST"; then
            marked=1
        elif [[ -n $SUCCESS_LIST ]] && write_marker "$DIGEST" pending "$(stat -c %s -- "$SUCCESS_LIST" 2>/dev/null || echo 0)"; then
            marked=1
        else
            say "could not write $MARKER (a restart would sync this work again)"
        fi
    fi
    if [[ -n $SUCCESS_LIST ]]; then
        STEP=success-list
        printf '%s\n' "$RID" >>"$SUCCESS_LIST" || die "$EX_SUCCESS_LIST" "cannot append to $SUCCESS_LIST"
        if [[ $marked == 1 ]]; then
            STEP=marker
            write_marker "$DIGEST" || say "could not finish $MARKER (the next sync of this work completes it)"
        fi
    fi
    STEP="done"
    say "ok"
}

main "$@"
