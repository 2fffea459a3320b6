//! The config's own tests: resolved values, differences between configs, groups of keys.

mod resolved_tests {
    use crate::config::*;

    fn keys_of_data(text: &str) -> Vec<String> {
        let t: toml::Table = text.parse().unwrap();
        t["data"].as_table().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_resolved_config_shows_the_folder_used_and_only_keys_that_apply() {
        let cfg = RunConfig::from_table(
            "[data]\ndataset = \"fashion-mnist\"\n[schedule]\nkind = \"constant\"\nlr = 0.1\n"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let text = cfg.to_toml().unwrap();
        for line in [
            "path = \"/usr/share/datasets/fashion-mnist\"\n",
            "augment = \"none\"\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        let keys = keys_of_data(&text);
        for unused in [
            "image_size",
            "shape",
            "classes",
            "size",
            "test_size",
            "labels",
            "pad",
        ] {
            assert!(!keys.contains(&unused.to_string()), "{unused} in\n{text}");
        }
        // It parses back to the same run, and writing it again gives the same text.
        let again = RunConfig::from_toml_str(&text).unwrap();
        assert_eq!(again.data, cfg.data.resolved());
        assert_eq!(again.to_toml().unwrap(), text);
        // A config.toml of the older form (every key, no path) is the same run.
        let old = toml::to_string(&cfg).unwrap();
        assert_ne!(old, text);
        assert!(same_config(&old, &text));

        // CIFAR-100 with crop_flip keeps labels and the padding; ImageNet its crop size.
        let c100 = RunConfig::from_table(
            "[data]\ndataset = \"cifar100\"\npath = \"c\"\n[schedule]\nkind = \"constant\"\nlr = 0.1\n"
                .parse()
                .unwrap(),
        )
        .unwrap();
        let keys = keys_of_data(&c100.to_toml().unwrap());
        for k in ["labels", "pad", "pad_mode", "augment", "path"] {
            assert!(keys.contains(&k.to_string()), "{k}: {keys:?}");
        }
        assert!(!keys.contains(&"image_size".to_string()));
    }
}

mod difference_tests {
    #[test]
    fn differences_name_each_changed_added_and_removed_key() {
        let old =
            "[optim]\nlr = 0.1\nmomentum = 0.9\n[schedule]\nkind = \"cosine\"\nlr_max = 0.03\n";
        let new = "[optim]\nlr = 0.1\n[schedule]\nkind = \"cosine\"\nlr_max = 0.04\nlr_min = 0.0\n";
        assert_eq!(
            crate::config::differences(old, new),
            [
                "optim.momentum: 0.9 → (none)",
                "schedule.lr_max: 0.03 → 0.04",
                "schedule.lr_min: (none) → 0.0",
            ]
        );
        assert!(crate::config::differences(old, old).is_empty());
        assert_eq!(
            crate::config::differences_clause(old, new, 1),
            " (optim.momentum: 0.9 → (none); and 2 more)"
        );
    }
}

mod group_tests {
    use crate::config::*;

    #[test]
    fn optim_groups_parse_and_are_written_back() {
        let text =
            "[data]\ndataset = \"synthetic\"\n[schedule]\nkind = \"constant\"\nlr = 0.1\n[optim]\n\
                    [[optim.group]]\nparams = \"linear.*\"\ndecay_mult = 250\n\
                    [[optim.group]]\nparams = \"conv3.bias\"\nlr_mult = 1\n";
        let cfg = RunConfig::parse("run.toml", text.as_bytes(), &[]).unwrap();
        let g = &cfg.optim.groups;
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].params.as_str(), g[0].lr_mult, g[0].decay_mult),
            ("linear.*", 1.0, 250.0)
        );
        assert_eq!((g[1].lr_mult, g[1].decay_mult), (1.0, 1.0));
        let back = RunConfig::from_toml_str(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(back.optim.groups, cfg.optim.groups);
        // Without groups the written config has no such key (run ids unchanged).
        let plain = RunConfig::parse(
            "run.toml",
            b"[data]\ndataset = \"synthetic\"\n[schedule]\nkind = \"constant\"\nlr = 0.1\n",
            &[],
        )
        .unwrap();
        assert!(!plain.to_toml().unwrap().contains("group"));
        let bad = "[data]\ndataset = \"synthetic\"\n[schedule]\nkind = \"constant\"\nlr = 0.1\n[[optim.group]]\nparams = \"x\"\nlr = 2\n";
        let err = RunConfig::parse("run.toml", bad.as_bytes(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lr"), "{err}");
    }
}
