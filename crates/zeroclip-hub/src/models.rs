//! The 9 checkpoints OpenAI published, with the URLs of the reference's `clip._MODELS`.
//!
//! As in the reference `_download`, the expected SHA-256 is the URL's second-to-last path segment
//! and the cache file name is its last one (`ViT-B/32` → `ViT-B-32.pt`).

/// Where the reference downloads from; [`crate::HubOptions::base_url`] replaces it.
pub const OPENAI_BASE_URL: &str = "https://openaipublic.azureedge.net";

/// One of OpenAI's released CLIP checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiModel {
    /// The name `clip.load` accepts, e.g. `ViT-B/32`.
    pub name: &'static str,
    /// The reference's download URL.
    pub url: &'static str,
    /// SHA-256 of the file, lowercase hex (the URL's second-to-last segment).
    pub sha256: &'static str,
    /// File name in the cache directory (the URL's last segment).
    pub file_name: &'static str,
}

impl OpenAiModel {
    /// The download URL, with the host part replaced by `base_url` when given (tests, mirrors);
    /// the path stays the reference's.
    pub fn url_with_base(&self, base_url: Option<&str>) -> String {
        match base_url {
            None => self.url.to_string(),
            Some(base) => {
                let path = &self.url[OPENAI_BASE_URL.len()..];
                format!("{}{path}", base.trim_end_matches('/'))
            }
        }
    }
}

macro_rules! openai_model {
    ($name:literal, $sha:literal, $file:literal) => {
        OpenAiModel {
            name: $name,
            url: concat!(
                "https://openaipublic.azureedge.net/clip/models/",
                $sha,
                "/",
                $file
            ),
            sha256: $sha,
            file_name: $file,
        }
    };
}

/// The reference's `_MODELS`, in its order.
pub const MODELS: &[OpenAiModel] = &[
    openai_model!(
        "RN50",
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
        "RN50.pt"
    ),
    openai_model!(
        "RN101",
        "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
        "RN101.pt"
    ),
    openai_model!(
        "RN50x4",
        "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
        "RN50x4.pt"
    ),
    openai_model!(
        "RN50x16",
        "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
        "RN50x16.pt"
    ),
    openai_model!(
        "RN50x64",
        "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
        "RN50x64.pt"
    ),
    openai_model!(
        "ViT-B/32",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "ViT-B-32.pt"
    ),
    openai_model!(
        "ViT-B/16",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "ViT-B-16.pt"
    ),
    openai_model!(
        "ViT-L/14",
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        "ViT-L-14.pt"
    ),
    openai_model!(
        "ViT-L/14@336px",
        "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
        "ViT-L-14-336px.pt"
    ),
];

/// The names `clip.available_models()` returns, in its order.
pub fn available_models() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

/// The OpenAI model with exactly this name (the reference matches names exactly).
pub fn find_model(name: &str) -> Option<&'static OpenAiModel> {
    MODELS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_file_name_are_the_url_segments() {
        for m in MODELS {
            let segments: Vec<&str> = m.url.split('/').collect();
            assert_eq!(segments[segments.len() - 2], m.sha256, "{}", m.name);
            assert_eq!(segments[segments.len() - 1], m.file_name, "{}", m.name);
            assert_eq!(m.sha256.len(), 64);
            assert!(m.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(m.url.starts_with(OPENAI_BASE_URL));
        }
    }

    #[test]
    fn names_are_unique_and_in_reference_order() {
        let names = available_models();
        assert_eq!(names.len(), 9);
        assert_eq!(names[0], "RN50");
        assert_eq!(names[5], "ViT-B/32");
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 9);
    }

    #[test]
    fn base_url_replaces_only_the_host() {
        let m = find_model("ViT-B/32").unwrap();
        assert_eq!(m.url_with_base(None), m.url);
        assert_eq!(
            m.url_with_base(Some("http://127.0.0.1:8080/")),
            format!("http://127.0.0.1:8080/clip/models/{}/ViT-B-32.pt", m.sha256)
        );
        assert!(find_model("ViT-B-32").is_none());
    }
}
