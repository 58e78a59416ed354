//! Sample data: users, threads, comments and likes from a JSON file, so a
//! first look at a new forum is not an empty page. Loaded through the same
//! queries as the API (`Db::load_fixture`), so every row produces its event.

use std::path::Path;

use serde::Deserialize;

use crate::db::{Db, Role};
use crate::{auth, markdown, StartError};

/// The demo data set, built into the binary for `stoa --demo`.
pub const DEMO: &str = include_str!("../fixtures/demo.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    pub users: Vec<SampleUser>,
    pub threads: Vec<SampleThread>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleUser {
    pub username: String,
    pub password: String,
    /// `member` unless set (`--demo`'s first user is an admin).
    #[serde(default = "member")]
    pub role: Role,
}

fn member() -> Role {
    Role::Member
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleThread {
    pub author: String,
    pub title: String,
    pub content: String,
    /// What `content` renders to, filled in by [`load`].
    #[serde(skip)]
    pub content_html: String,
    #[serde(default)]
    pub comments: Vec<SampleComment>,
    #[serde(default)]
    pub likes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleComment {
    pub author: String,
    pub content: String,
    /// What `content` renders to, filled in by [`load`].
    #[serde(skip)]
    pub content_html: String,
}

pub fn read(path: &Path) -> Result<DataSet, StartError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

pub fn parse(text: &str) -> Result<DataSet, StartError> {
    Ok(serde_json::from_str(text)?)
}

/// Loads a data set into a forum that has no threads yet; does nothing to
/// one that has (so restarting with `--demo` adds nothing twice). Returns
/// whether it loaded.
pub async fn load(db: &Db, mut data: DataSet) -> Result<bool, StartError> {
    // A mention links to a user of the data set or one already registered.
    let mut known: Vec<String> = data.users.iter().map(|u| u.username.clone()).collect();
    let mut mentioned = Vec::new();
    for thread in &data.threads {
        mentioned.extend(markdown::mentioned(&thread.content));
        for comment in &thread.comments {
            mentioned.extend(markdown::mentioned(&comment.content));
        }
    }
    if !mentioned.is_empty() {
        known.extend(db.registered_usernames(mentioned).await?);
    }
    let user = |name: &str| known.iter().find(|k| k.eq_ignore_ascii_case(name)).cloned();
    for thread in &mut data.threads {
        thread.content_html = markdown::render(&thread.content, &user);
        for comment in &mut thread.comments {
            comment.content_html = markdown::render(&comment.content, &user);
        }
    }
    let hashes: Vec<String> = data
        .users
        .iter()
        .map(|u| auth::hash_password(&u.password))
        .collect();
    let loaded = db.load_fixture(data, hashes).await?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_data_set_parses_and_names_only_its_own_users() {
        let demo = parse(DEMO).unwrap();
        let names: Vec<_> = demo.users.iter().map(|u| u.username.as_str()).collect();
        for thread in &demo.threads {
            assert!(names.contains(&thread.author.as_str()));
            for comment in &thread.comments {
                assert!(names.contains(&comment.author.as_str()));
            }
        }
        assert!(demo.threads.len() >= 3);
    }
}
