//! The dataset readers on files in the exact on-disk layouts: synthetic CIFAR/STL/Tiny-ImageNet/
//! ImageNet files made here, the CIFAR python pickles and special JPEGs made by
//! `tools/make_data_fixtures.py`, and the shipped Fashion-MNIST subset.

use std::path::{Path, PathBuf};

use burn::data::dataset::Dataset;
use image::{Rgb, RgbImage};
use sskd_data::cifar::{
    cifar100, cifar100_binary, cifar100_python, cifar100_python_label_names, cifar10_binary, Split,
};
use sskd_data::folders::decode_rgb;
use sskd_data::idx::idx_images;
use sskd_data::stl10::{stl10, stl10_folds, Stl10Split};
use sskd_data::{DataError, ImageFiles, PlanarImages};

fn repo(path: &str) -> PathBuf {
    sskd_testing::repo(path)
}

/// A CIFAR-style planar pixel value that encodes (image, channel, row, column).
fn pixel(image: usize, channel: usize, row: usize, column: usize) -> u8 {
    ((image * 31 + channel * 101 + row * 7 + column * 3) % 256) as u8
}

fn planar_record(image: usize, side: usize, column_major: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    for channel in 0..3 {
        for a in 0..side {
            for b in 0..side {
                let (row, column) = if column_major { (b, a) } else { (a, b) };
                bytes.push(pixel(image, channel, row, column));
            }
        }
    }
    bytes
}

fn assert_pixels(images: &PlanarImages, index: usize) {
    let image = images.image(index).unwrap();
    for (row, column) in [(0, 0), (3, 17), (images.height - 1, images.width - 2)] {
        let expected = [0, 1, 2].map(|c| pixel(index, c, row, column));
        assert_eq!(
            image.get_pixel(column as u32, row as u32).0,
            expected,
            "image {index} at ({row}, {column})"
        );
    }
}

#[test]
fn cifar100_binary_reads_records_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for i in 0..20 {
        bytes.extend([(i % 20) as u8, (i * 5 % 100) as u8]);
        bytes.extend(planar_record(i, 32, false));
    }
    std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
    let images = cifar100_binary(dir.path(), Split::Train).unwrap();
    assert_eq!(images.len(), 20);
    assert_eq!(images.labels[3], 15);
    assert_pixels(&images, 7);
    let item = images.get(19).unwrap();
    assert_eq!((item.label, item.image.dimensions()), (95, (32, 32)));

    std::fs::write(dir.path().join("train.bin"), &bytes[..bytes.len() - 5]).unwrap();
    let message = cifar100_binary(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("train.bin") && message.contains("multiple of 3074"),
        "{message}"
    );
    bytes[1] = 100;
    std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
    let message = cifar100_binary(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("record 0") && message.contains("label 100"),
        "{message}"
    );
    let message = cifar100_binary(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(message.contains("test.bin"), "{message}");
}

#[test]
fn cifar10_binary_concatenates_the_five_batches() {
    let dir = tempfile::tempdir().unwrap();
    for (file, offset) in [
        ("data_batch_1.bin", 0),
        ("data_batch_2.bin", 3),
        ("data_batch_3.bin", 6),
        ("data_batch_4.bin", 9),
        ("data_batch_5.bin", 12),
        ("test_batch.bin", 0),
    ] {
        let mut bytes = Vec::new();
        for i in offset..offset + 3 {
            bytes.push((i % 10) as u8);
            bytes.extend(planar_record(i, 32, false));
        }
        std::fs::write(dir.path().join(file), bytes).unwrap();
    }
    let train = cifar10_binary(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 15);
    assert_eq!(train.labels[11], 1);
    assert_pixels(&train, 13);
    assert_eq!(cifar10_binary(dir.path(), Split::Test).unwrap().len(), 3);
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    let message = cifar10_binary(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(message.contains("data_batch_4.bin"), "{message}");
}

#[test]
fn cifar100_python_pickles_match_the_binary_version() {
    let binary =
        cifar100_binary(&repo("tests/fixtures/data/cifar100_binary"), Split::Train).unwrap();
    for protocol in ["p2", "p4"] {
        let dir = repo(&format!("tests/fixtures/data/cifar100_python_{protocol}"));
        let python = cifar100_python(&dir, Split::Train).unwrap();
        assert_eq!(python.labels, binary.labels, "{protocol}");
        assert_eq!(python.pixels, binary.pixels, "{protocol}");
        assert_eq!(cifar100(&dir, Split::Test).unwrap().len(), 10);
        let names = cifar100_python_label_names(&dir).unwrap();
        assert_eq!((names.len(), names[42].as_str()), (100, "class_42"));
    }
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(repo("tests/fixtures/data/cifar100_python_p2/train")).unwrap();
    std::fs::write(dir.path().join("train"), &bytes[..bytes.len() / 2]).unwrap();
    let message = cifar100_python(dir.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("train") && message.contains("truncated"),
        "{message}"
    );
    let message = cifar100(&dir.path().join("nothing"), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(message.contains("neither the binary"), "{message}");
}

#[test]
fn stl10_transposes_column_major_planes_and_reads_folds() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<u8> = (0..4).flat_map(|i| planar_record(i, 96, true)).collect();
    std::fs::write(dir.path().join("train_X.bin"), &images).unwrap();
    std::fs::write(dir.path().join("train_y.bin"), [1u8, 10, 3, 4]).unwrap();
    std::fs::write(dir.path().join("fold_indices.txt"), "0 1\n2 3\n").unwrap();
    let train = stl10(dir.path(), Stl10Split::Train).unwrap();
    assert_eq!(train.labels, vec![0, 9, 2, 3]);
    assert_pixels(&train, 2);
    assert_eq!(
        stl10_folds(dir.path(), train.len()).unwrap(),
        vec![vec![0, 1], vec![2, 3]]
    );
    std::fs::write(dir.path().join("train_y.bin"), [1u8, 11, 3, 4]).unwrap();
    let message = stl10(dir.path(), Stl10Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("train_y.bin")
            && message.contains("record 1")
            && message.contains("label 11"),
        "{message}"
    );
    std::fs::write(dir.path().join("fold_indices.txt"), "0 9\n").unwrap();
    assert!(stl10_folds(dir.path(), 4)
        .unwrap_err()
        .to_string()
        .contains("line 1"));
    std::fs::write(dir.path().join("unlabeled_X.bin"), &images[..27_648 * 2]).unwrap();
    assert_eq!(stl10(dir.path(), Stl10Split::Unlabeled).unwrap().len(), 2);
}

#[test]
fn shipped_fashion_mnist_subset_is_class_balanced() {
    let dir = repo("data/fashion-mnist");
    let train = idx_images(&dir, "train", 10).unwrap();
    let test = idx_images(&dir, "t10k", 10).unwrap();
    assert_eq!((train.len(), test.len()), (8000, 2000));
    for class in 0..10 {
        assert_eq!(train.labels.iter().filter(|&&l| l == class).count(), 800);
    }
    let item = train.get(0).unwrap();
    assert_eq!(item.image.dimensions(), (28, 28));
    let Rgb([r, g, b]) = *item.image.get_pixel(14, 14);
    assert!(r == g && g == b, "grey expanded to RGB");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        [0u8, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 1, 3],
    )
    .unwrap();
    let message = idx_images(dir.path(), "t10k", 10).unwrap_err().to_string();
    assert!(
        message.contains("t10k-images-idx3-ubyte") && message.contains("expected 800"),
        "{message}"
    );
    // Images with a side of 0 hold no pixels (the payload, 0 bytes, matches the header).
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        [0u8, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 28],
    )
    .unwrap();
    let message = idx_images(dir.path(), "t10k", 10).unwrap_err().to_string();
    assert!(
        message.contains("t10k-images-idx3-ubyte") && message.contains("0×28 pixels"),
        "{message}"
    );
}

fn write_jpeg(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let image = RgbImage::from_pixel(64, 64, Rgb([shade, 255 - shade, 128]));
    image
        .save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

#[test]
fn tiny_imagenet_reads_val_annotations_directly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("wnids.txt"), "n02\nn01\n").unwrap();
    for (wnid, shade) in [("n01", 10), ("n02", 200)] {
        for k in 0..2 {
            write_jpeg(
                &root.join(format!("train/{wnid}/images/{wnid}_{k}.JPEG")),
                shade,
            );
        }
    }
    write_jpeg(&root.join("val/images/val_0.JPEG"), 200);
    image::GrayImage::from_pixel(64, 64, image::Luma([90]))
        .save_with_format(root.join("val/images/val_1.JPEG"), image::ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(
        root.join("val/val_annotations.txt"),
        "val_0.JPEG\tn02\t0\t0\t10\t10\nval_1.JPEG\tn01\t1\t1\t5\t5\n",
    )
    .unwrap();
    let train = ImageFiles::tiny_imagenet(root, false).unwrap();
    assert_eq!(train.classes, vec!["n01", "n02"]);
    assert_eq!(
        train.files.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        vec![0, 0, 1, 1]
    );
    let val = ImageFiles::tiny_imagenet(root, true).unwrap();
    assert_eq!(
        val.files.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let grey = val.get(1).unwrap();
    assert_eq!(grey.image.dimensions(), (64, 64));
    std::fs::write(
        root.join("val/val_annotations.txt"),
        "val_0.JPEG\tn09\t0\t0\t1\t1\n",
    )
    .unwrap();
    let message = ImageFiles::tiny_imagenet(root, true)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("val_annotations.txt")
            && message.contains("line 1")
            && message.contains("n09"),
        "{message}"
    );
}

#[test]
fn image_folders_decode_disguised_png_cmyk_and_grey_and_report_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fixtures = repo("tests/fixtures/data/images");
    for (class, file) in [
        ("n01", "cmyk.JPEG"),
        ("n01", "png_disguised.JPEG"),
        ("n02", "grey.JPEG"),
    ] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        std::fs::copy(fixtures.join(file), root.join(class).join(file)).unwrap();
    }
    let files = ImageFiles::image_folder(root).unwrap();
    assert_eq!(files.len(), 3);
    let mut scans = Vec::new();
    let observed = ImageFiles::image_folder_observed(root, |scan| scans.push(scan)).unwrap();
    assert_eq!(observed.files, files.files);
    let scan = |classes_done, images| sskd_data::folders::FolderScan {
        classes_done,
        classes: 2,
        images,
    };
    assert_eq!(scans, [scan(1, 2), scan(2, 1)]);
    for (index, (path, _)) in files.files.iter().enumerate() {
        let decoded = files.decode(index).unwrap().image;
        let reference = decode_rgb(
            &fixtures.join(
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .replace(".JPEG", ".rgb.png"),
            ),
        )
        .unwrap();
        assert_eq!(decoded.dimensions(), reference.dimensions());
        let mean_error: f64 = decoded
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / decoded.as_raw().len() as f64;
        assert!(
            mean_error < 3.0,
            "{}: mean |error| {mean_error} against PIL",
            path.display()
        );
    }
    std::fs::write(root.join("n02/broken.JPEG"), b"not an image").unwrap();
    let files = ImageFiles::image_folder(root).unwrap();
    let message = files.clone().verify(false).unwrap_err().to_string();
    assert!(message.contains("broken.JPEG"), "{message}");
    let (kept, skipped) = files.verify(true).unwrap();
    assert_eq!((kept.len(), skipped), (3, 1));
    assert!(ImageFiles::image_folder(&root.join("missing")).is_err());
    std::fs::create_dir_all(root.join("n03")).unwrap();
    let message = ImageFiles::image_folder(root).unwrap_err().to_string();
    assert!(
        message.contains("n03") && message.contains("without any .jpeg/.jpg/.png image"),
        "{message}"
    );
    let _: &dyn Fn(&Path) -> Result<RgbImage, DataError> = &decode_rgb;
}
