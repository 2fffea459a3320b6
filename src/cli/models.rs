//! `lrlab models`: the models and their parameter counts.

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Classes, channels and image side of this dataset's runs (mnist, fashion-mnist,
    /// cifar10, cifar100, imagenet, imagenet16/32/64, synthetic); the flags below win.
    #[arg(long)]
    dataset: Option<String>,
    /// Number of classes [default: 10].
    #[arg(long)]
    classes: Option<i64>,
    /// Input channels [default: 3].
    #[arg(long)]
    in_channels: Option<i64>,
    /// Image side [default: 224 for the ImageNet models, 32 for the others].
    #[arg(long)]
    size: Option<i64>,
    /// Instead, print this model's trainable parameters as CSV (name,shape,numel): the
    /// names [[optim.group]] patterns select.
    #[arg(long, value_name = "ARCH")]
    params: Option<String>,
}

/// `lrlab models`: one CSV row per model; a model that cannot take the input gets an empty
/// count and a note on stderr.
pub fn run(a: ModelsArgs) -> anyhow::Result<u8> {
    let ModelsArgs {
        dataset,
        classes,
        in_channels,
        size,
        params,
    } = a;
    let from_data = match dataset {
        None => None,
        Some(d) => {
            let name: lrlab::data::DatasetName =
                toml::Value::String(d.clone()).try_into().map_err(|_| {
                    let all: Vec<&str> = lrlab::data::DatasetName::ALL
                        .iter()
                        .map(|n| n.as_str())
                        .collect();
                    lrlab::input_error(format!(
                        "--dataset {d:?}: expected one of {}",
                        all.join(", ")
                    ))
                })?;
            Some(name.input())
        }
    };
    let classes = classes.or(from_data.map(|d| d.0)).unwrap_or(10);
    let in_channels = in_channels.or(from_data.map(|d| d.1)).unwrap_or(3);
    let size = size.or(from_data.map(|d| d.2));
    if let Some(arch) = params {
        println!("name,shape,numel");
        for (name, shape) in lrlab::models::param_names(&arch, classes, in_channels, size)? {
            let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
            println!(
                "{name},{},{}",
                dims.join("x"),
                shape.iter().product::<i64>()
            );
        }
        return Ok(0);
    }
    let rows = lrlab::models::param_table(classes, in_channels, size)?;
    // The input each count assumes: classes and a CxHxW image.
    println!("model,params,input");
    for (name, side, count) in rows {
        let input = format!("{classes} classes {in_channels}x{side}x{side}");
        match count {
            Ok(n) => println!("{name},{n},{input}"),
            Err(why) => {
                println!("{name},,{input}");
                eprintln!("note: {why}");
            }
        }
    }
    Ok(0)
}
