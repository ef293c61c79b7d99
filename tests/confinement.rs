//! Symlinks a sandbox plants in a chat directory cannot lead the host
//! anywhere: the host never follows one, so reads and appends fail, writes
//! replace the link, and nothing outside changes.

use chatstore_host::Error;
use chatstore_tests::{Harness, attachment, history, snapshot};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

/// A directory beside the data directory with a secret in it.
fn outside(h: &Harness) -> PathBuf {
    let dir = h.tmp.path().join("outside");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("secret.txt"), b"top secret").unwrap();
    dir
}

/// The typed answer to a file a sandbox replaced with something else.
fn is_changed<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::ChatFileChanged(_)))
}

#[test]
fn read_attachment_does_not_follow_a_symlink_out_of_the_chat_directory() {
    let h = Harness::new();
    let out = outside(&h);
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    let abs = h
        .store
        .upload_attachment(user, c, "abs.txt", None, &b"mine"[..])
        .unwrap();
    let rel = h
        .store
        .upload_attachment(user, c, "rel.txt", None, &b"mine"[..])
        .unwrap();
    let dir = h.chat_dir(&chat);
    fs::remove_file(dir.join("abs.txt")).unwrap();
    symlink(out.join("secret.txt"), dir.join("abs.txt")).unwrap();
    fs::remove_file(dir.join("rel.txt")).unwrap();
    symlink("../../../../../outside/secret.txt", dir.join("rel.txt")).unwrap();
    assert_eq!(
        fs::read(dir.join("rel.txt")).unwrap(),
        b"top secret",
        "the link does lead outside"
    );

    for file in [abs, rel] {
        let read = attachment(&h.store, user, c, file.file_id);
        assert!(is_changed(read.clone()), "{read:?}");
    }
}

#[test]
fn upload_attachment_replaces_a_planted_symlink_instead_of_writing_through_it() {
    let h = Harness::new();
    let out = outside(&h);
    let (user, chat) = h.user_with_chat();
    let dir = h.chat_dir(&chat);
    symlink(out.join("secret.txt"), dir.join("report.txt")).unwrap();
    symlink(
        "../../../../../outside/secret.txt",
        dir.join("relative.txt"),
    )
    .unwrap();
    let outside_before = snapshot(&out);

    for name in ["report.txt", "relative.txt"] {
        h.store
            .upload_attachment(user, chat.chat_id, name, None, &b"overwritten?"[..])
            .unwrap();
        let meta = fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is now a regular file");
        assert_eq!(fs::read(dir.join(name)).unwrap(), b"overwritten?");
    }
    assert_eq!(snapshot(&out), outside_before);
}

#[test]
fn history_md_cannot_be_redirected_outside() {
    let h = Harness::new();
    let out = outside(&h);
    let (user, chat) = h.user_with_chat();
    let history_md = h.chat_dir(&chat).join("history.md");
    fs::remove_file(&history_md).unwrap();
    symlink(out.join("secret.txt"), &history_md).unwrap();
    let outside_before = snapshot(&out);

    assert!(is_changed(history(&h.store, user, chat.chat_id)));
    assert!(is_changed(h.store.append_history(
        user,
        chat.chat_id,
        "appended?".as_bytes()
    )));
    assert_eq!(snapshot(&out), outside_before);

    // Replacing the history replaces the link, not what it points at.
    h.store
        .write_history(user, chat.chat_id, "# fresh\n".as_bytes())
        .unwrap();
    assert_eq!(snapshot(&out), outside_before);
    assert!(
        fs::symlink_metadata(&history_md)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(history(&h.store, user, chat.chat_id).unwrap(), "# fresh\n");
}

#[test]
fn a_symlink_is_not_followed_even_inside_the_chat_directory() {
    let h = Harness::new();
    let (user, chat) = h.user_with_chat();
    let c = chat.chat_id;
    let dir = h.chat_dir(&chat);
    let file = h
        .store
        .upload_attachment(user, c, "alias.txt", None, &b"old"[..])
        .unwrap();
    fs::create_dir(dir.join("out")).unwrap();
    fs::write(dir.join("out/result.txt"), b"sandbox result").unwrap();
    fs::remove_file(dir.join("alias.txt")).unwrap();
    symlink("out/result.txt", dir.join("alias.txt")).unwrap();
    assert!(is_changed(attachment(&h.store, user, c, file.file_id)));
}

#[test]
fn usage_does_not_count_what_a_symlink_points_at() {
    let h = Harness::new();
    let out = outside(&h);
    fs::write(out.join("huge.bin"), vec![0u8; 50_000]).unwrap();
    let (user, chat) = h.user_with_chat();
    h.store
        .upload_attachment(user, chat.chat_id, "a", None, &[1; 10][..])
        .unwrap();
    symlink(out.join("huge.bin"), h.chat_dir(&chat).join("huge.bin")).unwrap();
    symlink(&out, h.chat_dir(&chat).join("outside-dir")).unwrap();
    assert_eq!(h.store.get_usage(user).unwrap().used_bytes, 10);
}

#[test]
fn clearing_and_deleting_remove_links_not_their_targets() {
    let h = Harness::new();
    let out = outside(&h);
    let (user, chat) = h.user_with_chat();
    let other = h.store.create_chat(user).unwrap();
    symlink(out.join("secret.txt"), h.chat_dir(&chat).join("file-link")).unwrap();
    symlink(&out, h.chat_dir(&chat).join("dir-link")).unwrap();
    symlink(&out, h.chat_dir(&other).join("dir-link")).unwrap();
    let outside_before = snapshot(&out);

    h.store.clear_attachments(user, chat.chat_id).unwrap();
    let left: Vec<_> = fs::read_dir(h.chat_dir(&chat))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["history.md"]);
    h.store.delete_chat(user, other.chat_id).unwrap();
    assert!(!h.chat_dir(&other).exists());
    assert_eq!(snapshot(&out), outside_before);
}
